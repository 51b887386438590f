// The dashboard's HTTP server (node:http only): the built web app, the run's
// events as server-sent events, a JSON snapshot, Prometheus /metrics and the
// adapters' files. Read-only (GET and HEAD); loopback-only unless a token
// guards every request.
import { randomBytes } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLoopback } from '@lorafleet/protocol';
import type { RunEventLog } from '../observe/events.js';
import { TokenCheck } from './auth.js';
import { DEFAULT_STREAM_LIMITS, EventStream, type StreamLimits } from './event-stream.js';
import {
  type StaticFile,
  adapterFilePath,
  dashboardDist,
  listDownloads,
  loadStaticFiles,
  sendAdapterFile,
} from './files.js';
import { hostOfHeader, parseListen, urlHost } from './listen.js';
import { runMetrics } from './metrics.js';
import { followRunState } from './run-state.js';

export interface DashboardOptions {
  events: RunEventLog;
  /** HOST:PORT; port 0 picks a free one. */
  listen: string;
  /** Required by every request when set; required to listen on a non-loopback address. */
  token?: string;
  /** The run's OUT folder (checkpoints/ and adapter/ are served from it). */
  runDir: string;
  log: (line: string) => void;
  /** The built web app; default: @lorafleet/dashboard's dist/. */
  staticDir?: string;
  streamLimits?: Partial<StreamLimits>;
}

export interface Dashboard {
  /** The page's URL, with ?token= when a token is set. */
  url: string;
  close(): Promise<void>;
}

/** How long close() lets open responses finish before cutting them. */
const CLOSE_GRACE_MS = 1000;

/** More concurrent event streams than this are refused (503), so no one can exhaust the process. */
const MAX_STREAMS = 64;

// Scripts, styles, data: this origin only; nothing from anywhere else.
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'Content-Security-Policy': CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  // The token may be in the page's URL: never send it elsewhere as a referrer.
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

const CHECKPOINT_ROUTE = /^\/api\/checkpoints\/([^/]+)\/([^/]+)$/;

/** What the request handlers share: the run, its files, the open streams. */
interface Site {
  events: RunEventLog;
  runDir: string;
  log: (line: string) => void;
  auth: TokenCheck | undefined;
  token: string | undefined;
  files: Map<string, StaticFile>;
  run: ReturnType<typeof followRunState>;
  registry: ReturnType<typeof runMetrics>;
  streams: Set<EventStream>;
  limits: StreamLimits;
  /** Names this server's event ids, so a browser reconnecting to a restarted one starts over. */
  instance: string;
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const { events, token, runDir, log } = options;
  const address = parseListen(options.listen);
  if (token === undefined && !isLoopback(address.host)) {
    throw new Error(
      `dashboard: ${options.listen} is reachable from other machines; set --dashboard-token TOKEN (every request must then carry it) or listen on 127.0.0.1`,
    );
  }
  const files = loadStaticFiles(options.staticDir ?? dashboardDist());
  const server = createServer();
  const port = await listen(server, address, options.listen);
  server.on('error', (err) => log(`dashboard: ${err.message}`));
  const run = followRunState(events);
  const site: Site = {
    events,
    runDir,
    log,
    token,
    auth: token === undefined ? undefined : new TokenCheck(token, port),
    files,
    run,
    registry: runMetrics(run.state),
    streams: new Set(),
    limits: { ...DEFAULT_STREAM_LIMITS, ...options.streamLimits },
    instance: randomBytes(6).toString('hex'),
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(site, req, res).catch((err: unknown) => {
      log(`dashboard: ${req.method} ${req.url}: ${(err as Error).message}`);
      if (!res.headersSent) sendText(res, 500, 'dashboard: internal error');
      else res.destroy();
    });
  });
  const query = token === undefined ? '' : `?token=${encodeURIComponent(token)}`;
  return {
    url: `http://${urlHost(address.host)}:${port}/${query}`,
    close: () => closeSite(site, server),
  };
}

/** Listens on `address`; the port bound (the kernel's pick for port 0). */
function listen(
  server: Server,
  address: ReturnType<typeof parseListen>,
  given: string,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `dashboard: cannot listen on ${given}: ${err.code === 'EADDRINUSE' ? 'the port is in use; pick another (port 0: any free one)' : err.message}`,
        ),
      ),
    );
    server.listen(address.port, address.host, () =>
      resolve((server.address() as AddressInfo).port),
    );
  });
}

async function closeSite(site: Site, server: Server): Promise<void> {
  site.run.stop();
  for (const stream of site.streams) stream.close('server closing');
  // Let the streams' last writes drain, but never wait on a client for long.
  const cutoff = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
  clearTimeout(cutoff);
}

/** The guards (read-only, loopback Host or token), then the route. */
async function handle(site: Site, req: IncomingMessage, res: ServerResponse): Promise<void> {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
  const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return sendText(res, 405, 'dashboard: read-only; only GET and HEAD');
  }
  const { auth } = site;
  // Without a token, a page on another site that points its own name at
  // 127.0.0.1 (DNS rebinding) must not read the run: insist on a loopback Host.
  if (!auth && !isLoopback(hostOfHeader(req.headers.host ?? ''))) {
    return sendText(res, 403, 'dashboard: open it as http://127.0.0.1 or http://localhost');
  }
  if (auth && !auth.accepts(req, url)) {
    res.setHeader('WWW-Authenticate', 'Bearer realm="lorafleet dashboard"');
    return sendText(
      res,
      401,
      'dashboard: a token is required (?token=... or Authorization: Bearer ...)',
    );
  }
  return route(site, req, res, url);
}

async function route(
  site: Site,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const path = url.pathname;
  const head = req.method === 'HEAD';
  if (path === '/api/events') return openStream(site, req, res);
  if (path === '/api/state') {
    const downloads = await listDownloads(site.runDir);
    return sendJson(res, { state: site.run.state, downloads }, head);
  }
  if (path === '/metrics') {
    const body = await site.registry.metrics();
    res.writeHead(200, { 'Content-Type': site.registry.contentType, 'Cache-Control': 'no-store' });
    return void res.end(head ? undefined : body);
  }
  const download = CHECKPOINT_ROUTE.exec(path);
  if (download) {
    const file = adapterFilePath(site.runDir, decode(download[1]!), decode(download[2]!));
    if (file && (await sendAdapterFile(res, file, head))) return;
    return sendText(
      res,
      404,
      'dashboard: no such adapter file (adapter_config.json or adapter_model.safetensors of a checkpoint on disk)',
    );
  }
  if (path.startsWith('/api/')) return sendText(res, 404, `dashboard: no API ${path}`);
  const asset = site.files.get(path);
  if (!asset) return sendText(res, 404, `dashboard: no page ${path}`);
  if (site.auth && url.searchParams.has('token'))
    res.setHeader('Set-Cookie', site.auth.cookie(site.token!));
  return sendStatic(res, path, asset, head);
}

/** GET /api/events: the run's events as server-sent events, resumed after Last-Event-ID. */
function openStream(site: Site, req: IncomingMessage, res: ServerResponse): void {
  const { streams } = site;
  if (streams.size >= MAX_STREAMS) {
    return sendText(res, 503, `dashboard: already ${MAX_STREAMS} event streams open`);
  }
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
  });
  if (req.method === 'HEAD') return void res.end();
  res.socket?.setNoDelay(true);
  const lastId = req.headers['last-event-id'];
  const stream = new EventStream(
    res,
    site.events,
    site.instance,
    typeof lastId === 'string' ? lastId : undefined,
    site.limits,
    (s, reason) => {
      streams.delete(s);
      if (reason === 'stalled') site.log(`dashboard: dropped an event stream that stopped reading`);
    },
  );
  streams.add(stream);
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return '';
  }
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
  });
  res.end(text + '\n');
}

function sendJson(res: ServerResponse, value: unknown, head: boolean): void {
  const body = JSON.stringify(value);
  res.writeHead(200, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(head ? undefined : body);
}

function sendStatic(res: ServerResponse, path: string, file: StaticFile, head: boolean): void {
  res.writeHead(200, {
    'Content-Type': file.contentType,
    'Content-Length': file.body.length,
    // Vite names assets by content hash; the page itself must be fetched anew.
    'Cache-Control': path.startsWith('/assets/')
      ? 'private, max-age=31536000, immutable'
      : 'no-store',
  });
  res.end(head ? undefined : file.body);
}
