# fedtls container image. Build:  docker build -t fedtls .
# Run next to Synapse: see README.md ("Docker"). State (ACME account, certificates, control
# socket) lives in the /var/lib/fedtls volume; the config is mounted at /etc/fedtls/fedtls.yaml.

# --- build: compile the TypeScript, then drop the dev dependencies ---
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY src ./src
RUN npm run build && npm prune --omit=dev && chmod 0755 dist/cli.js

# --- runtime: node and the built files only, as an unprivileged user ---
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    FEDTLS_CONFIG=/etc/fedtls/fedtls.yaml
# A fixed uid/gid (8448) so the state volume's owner is the same in every container.
RUN groupadd --system --gid 8448 fedtls \
 && useradd --system --uid 8448 --gid fedtls --home-dir /var/lib/fedtls --shell /usr/sbin/nologin fedtls \
 && install -d -o fedtls -g fedtls -m 0700 /var/lib/fedtls \
 && install -d -m 0755 /etc/fedtls
WORKDIR /opt/fedtls
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY config ./config
RUN ln -s /opt/fedtls/dist/cli.js /usr/local/bin/fedtls
USER fedtls
VOLUME ["/var/lib/fedtls"]
# 80: ACME HTTP-01 challenges; 8448: federation (TLS). A non-root process may bind them
# because Docker (20.10+) sets net.ipv4.ip_unprivileged_port_start=0 in the container's
# network namespace; on other engines add --sysctl net.ipv4.ip_unprivileged_port_start=80.
EXPOSE 80 8448
# Healthy = the daemon answers on its control socket (fedtls status exits 0).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["fedtls", "status"]
# Stopping drains requests in flight for shutdown.drain_timeout (30s by default):
# give `docker stop` more than that (docker run --stop-timeout 40).
STOPSIGNAL SIGTERM
ENTRYPOINT ["fedtls"]
CMD ["run"]
