# fedtls container image: build the TypeScript, then run as an unprivileged user.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /opt/fedtls
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY config ./config
USER node
VOLUME ["/var/lib/fedtls"]
EXPOSE 80 8448
ENTRYPOINT ["node", "/opt/fedtls/dist/cli.js"]
CMD ["run", "--config", "/etc/fedtls/fedtls.yaml"]
