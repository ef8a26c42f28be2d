// The typed configuration that every other part of fedtls receives.
// Only src/config/ builds it (from YAML, with defaults); everything else reads it.

/** One `host:port` that a listener binds. */
export interface ListenAddress {
  host: string;
  port: number;
  /** As the admin wrote it, for messages. */
  text: string;
  /** True when this address came from fedtls's defaults rather than the config file. */
  isDefault: boolean;
}

/** A certificate/key pair managed by hand (not by ACME). */
export interface ManualCertificate {
  certificatePath: string;
  privateKeyPath: string;
  /** Names this pair is meant to serve; empty = whatever names the certificate holds. */
  names: string[];
}

export interface AcmeConfig {
  enabled: boolean;
  directoryUrl: string;
  email: string | null;
  domains: string[];
  /** Extra PEM roots trusted for the ACME server's own HTTPS (private/test CAs). */
  caBundlePath: string | null;
  /** Renew when this much lifetime is left (ms); null = one third of the lifetime. */
  renewBeforeMs: number | null;
  profile: string | null;
  eab: { kid: string; hmacKey: string } | null;
  /** Command run after each successful issuance/renewal. */
  deployHook: string | null;
  /** Key type for new certificates. */
  keyType: 'ecdsa-p256' | 'rsa-2048' | 'rsa-4096';
}

export interface ProxyConfig {
  backend: URL;
  maxBodySize: number;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  blockPaths: string[];
  trustedProxies: string[];
  maxBackendSockets: number;
}

export interface WellKnownConfig {
  /** `host[:port]` served as `m.server`, or null = file not served. */
  server: string | null;
  /** The host part of `server` (lower case, IPv6 without brackets): the name peers then connect to. */
  serverHost: string | null;
  /** The client discovery object, or null = file not served. */
  client: Record<string, unknown> | null;
  /** What the extra HTTPS listener does with paths other than .well-known. */
  httpsOtherPaths: 'proxy' | 'not_found';
}

export interface Config {
  /** Absolute path of the file this came from (for messages). */
  file: string;
  /** The file's text as read (loadConfig sets it), so worker processes build the very same Config. */
  text?: string;
  /** As configured; may carry a port (`example.org:8448`). */
  serverName: string;
  /** server_name without its port: the name certificates must hold. */
  serverHost: string;
  listen: {
    http: ListenAddress[];
    federation: ListenAddress[];
    https: ListenAddress[];
    metrics: ListenAddress[];
  };
  stateDir: string;
  /** Unix socket for `fedtls status|certificates|renew`. */
  controlSocket: string;
  acme: AcmeConfig;
  tls: {
    certificates: ManualCertificate[];
    /** Name whose certificate is served when SNI is absent or unknown; default server_name. */
    defaultName: string;
  };
  http: {
    /** Redirect non-challenge requests on the HTTP listener to https://. */
    redirectToHttps: boolean;
  };
  proxy: ProxyConfig;
  wellKnown: WellKnownConfig;
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'; format: 'json' | 'pretty' };
  shutdown: { drainTimeoutMs: number };
  /** Processes serving the TLS listeners; 1 = the daemon serves them itself (no cluster). */
  workers: number;
  /** Valid but probably not meant (key path + message): check-config prints them, run logs them at start. */
  warnings: { key: string; message: string }[];
}
