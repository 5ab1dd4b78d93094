import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TestServer {
  readonly url: string;
  close(): Promise<void>;
}

/** A real node:http server on a free loopback port. A handler that throws answers 500 with the message. */
export async function serve(handler: (req: IncomingMessage, res: ServerResponse) => unknown): Promise<TestServer> {
  const server = createServer((req, res) => {
    Promise.resolve()
      .then(() => handler(req, res))
      .catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(error instanceof Error ? `${error.name}: ${error.message}` : error));
      });
  });
  return listening(server.listen(0, '127.0.0.1'));
}

/** A server that was told to listen, once it does: its URL and a close that drops open connections. */
export async function listening(server: Server): Promise<TestServer> {
  if (!server.listening) await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly setCookies: string[];
  readonly body: string;
  json<T = Record<string, unknown>>(): T;
}

/** One HTTP request with exactly the headers given (no cookie handling of its own). */
export function send(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; localAddress?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: options.method ?? 'GET', headers: options.headers, localAddress: options.localAddress, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            setCookies: res.headers['set-cookie'] ?? [],
            body,
            json: () => JSON.parse(body),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** `name=value` of the named cookie among Set-Cookie lines, for a Cookie header. */
export function cookiePair(setCookies: readonly string[], name: string): string | undefined {
  const line = setCookies.find((c) => c.startsWith(`${name}=`));
  return line?.split(';')[0];
}

/**
 * A node:http-like response that only keeps its headers: enough for `resolve(req, res)` to set
 * the visitor cookie, which `cookie()` hands back as `name=value` for the next request.
 */
export function headersOnlyResponse() {
  const headers = new Map<string, number | string | readonly string[]>();
  return {
    headersSent: false,
    getHeader: (name: string) => headers.get(name) as number | string | string[] | undefined,
    setHeader: (name: string, value: number | string | readonly string[]) => void headers.set(name, value),
    cookie: () => String(headers.get('set-cookie')).split(';')[0] as string,
  };
}
