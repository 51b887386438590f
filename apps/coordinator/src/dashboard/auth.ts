// The dashboard token: accepted as ?token=, as `Authorization: Bearer`, or as
// the cookie the server sets when the page itself was opened with ?token=
// (so the page's scripts and styles load without the token in their URLs).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export class TokenCheck {
  private readonly digest: Buffer;
  /** Per port: browsers share cookies across the ports of one host. */
  readonly cookieName: string;

  constructor(token: string, port: number) {
    if (token === '') throw new Error('dashboard: the token must not be empty');
    this.digest = sha256(token);
    this.cookieName = `lorafleet_dashboard_${port}`;
  }

  /** Whether the request carries the token in any accepted form; compared in constant time. */
  accepts(req: IncomingMessage, url: URL): boolean {
    return this.candidates(req, url).some((c) => timingSafeEqual(sha256(c), this.digest));
  }

  /** The Set-Cookie value that lets the page load its own assets. */
  cookie(token: string): string {
    return `${this.cookieName}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict`;
  }

  private candidates(req: IncomingMessage, url: URL): string[] {
    const found: string[] = [];
    const query = url.searchParams.get('token');
    if (query !== null) found.push(query);
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (bearer) found.push(bearer[1]!.trim());
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === this.cookieName) {
        try {
          found.push(decodeURIComponent(part.slice(eq + 1).trim()));
        } catch {
          // A malformed cookie is no token.
        }
      }
    }
    return found;
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
