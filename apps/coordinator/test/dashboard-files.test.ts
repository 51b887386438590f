// The dashboard server's static files, adapter downloads and guards (token,
// read-only, traversal, symlinks, loopback) over real HTTP on 127.0.0.1.
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from './helpers.js';
import {
  fetchRaw,
  openStream,
  runDir,
  sampleLog,
  serve,
  useDashboardFixture,
} from './dashboard-fixture.js';

useDashboardFixture();

describe('static files and downloads', () => {
  it('serves the built page with a strict Content-Security-Policy, and HEAD without a body', async () => {
    const dashboard = await serve(sampleLog());
    const page = await fetchRaw(dashboard.url, '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body.toString()).toMatch(/<script type="module"[^>]* src="\.\/assets\//);
    expect(page.body.toString()).not.toMatch(/https?:\/\//); // nothing from a CDN
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    const script = /src="\.(\/assets\/[^"]+\.js)"/.exec(page.body.toString())![1]!;
    expect((await fetchRaw(dashboard.url, script)).headers['content-type']).toMatch(
      /^text\/javascript/,
    );
    const head = await fetchRaw(dashboard.url, '/', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
  });

  it('downloads adapter files of a checkpoint on disk', async () => {
    const dashboard = await serve(sampleLog());
    const reply = await fetchRaw(
      dashboard.url,
      '/api/checkpoints/step-000002/adapter_model.safetensors',
    );
    expect(reply.status).toBe(200);
    expect([...reply.body]).toEqual([1, 2, 3, 4]);
    expect(reply.headers['content-disposition']).toBe(
      'attachment; filename="adapter_model.safetensors"',
    );
    expect(
      (await fetchRaw(dashboard.url, '/api/checkpoints/adapter/adapter_config.json')).status,
    ).toBe(404); // no final adapter yet
  });

  it('does not follow a checkpoint folder that is a symlink to outside the run', async () => {
    const outside = await makeTempDir('dashboard-outside');
    try {
      await writeFile(join(outside, 'adapter_config.json'), '{"outside":"the run"}');
      await writeFile(join(outside, 'adapter_model.safetensors'), 'secret weights');
      const linkedRun = await makeTempDir('dashboard-linked');
      await mkdir(join(linkedRun, 'checkpoints'));
      await symlink(outside, join(linkedRun, 'checkpoints', 'step-000009'));
      // A whole checkpoints folder that is a link to outside: refused too.
      const viaFolder = await makeTempDir('dashboard-linked-folder');
      await symlink(join(linkedRun, 'checkpoints'), join(viaFolder, 'checkpoints'));
      for (const dir of [linkedRun, viaFolder]) {
        const dashboard = await serve(sampleLog(), { runDir: dir });
        for (const file of ['adapter_config.json', 'adapter_model.safetensors']) {
          const reply = await fetchRaw(dashboard.url, `/api/checkpoints/step-000009/${file}`);
          expect(reply.status, `${dir} ${file}`).toBe(404);
          expect(reply.body.toString()).not.toContain('secret weights');
          expect(reply.body.toString()).not.toContain('outside');
        }
        const state = await fetchRaw(dashboard.url, '/api/state');
        expect(JSON.parse(state.body.toString()).downloads).toEqual([]);
      }
      await removeDir(linkedRun);
      await removeDir(viaFolder);
    } finally {
      await removeDir(outside);
    }
  });

  it('serves a run whose own folder is reached through a symlink', async () => {
    const linkDir = await makeTempDir('dashboard-link-to-run');
    try {
      const link = join(linkDir, 'run');
      await symlink(runDir, link);
      const dashboard = await serve(sampleLog(), { runDir: link });
      const reply = await fetchRaw(
        dashboard.url,
        '/api/checkpoints/step-000002/adapter_model.safetensors',
      );
      expect(reply.status).toBe(200);
      expect([...reply.body]).toEqual([1, 2, 3, 4]);
    } finally {
      await removeDir(linkDir);
    }
  });

  it.each([
    '/api/checkpoints/step-000002/optimizer.safetensors',
    '/api/checkpoints/..%2F..%2F/secret.txt',
    '/api/checkpoints/step-000002/..%2F..%2Fsecret.txt',
    '/api/checkpoints/%2E%2E/secret.txt',
    '/api/checkpoints/step-000002/%2e%2e%2f%2e%2e%2fsecret.txt',
    '/assets/../../package.json',
    '/../package.json',
    '/%2e%2e/%2e%2e/package.json',
    '/api/nothing',
  ])('refuses %s', async (path) => {
    const dashboard = await serve(sampleLog());
    const reply = await fetchRaw(dashboard.url, path);
    expect(reply.status).toBe(404);
    expect(reply.body.toString()).not.toContain('not for download');
  });
});

describe('guards', () => {
  it('is read-only: 405 for anything but GET and HEAD', async () => {
    const dashboard = await serve(sampleLog());
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const reply = await fetchRaw(dashboard.url, '/api/state', { method });
      expect(reply.status, method).toBe(405);
      expect(reply.headers.allow).toBe('GET, HEAD');
    }
  });

  it('with a token: 401 without it or with a wrong one; 200 with ?token=, a Bearer header or the page cookie', async () => {
    const dashboard = await serve(sampleLog(), { token: 's3cret token' });
    expect(dashboard.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=s3cret%20token$/);
    for (const path of [
      '/',
      '/api/state',
      '/api/events',
      '/metrics',
      '/api/checkpoints/step-000002/adapter_config.json',
    ]) {
      const reply = await fetchRaw(dashboard.url, path);
      expect(reply.status, path).toBe(401);
      expect(reply.headers['www-authenticate']).toMatch(/^Bearer/);
    }
    expect((await fetchRaw(dashboard.url, '/api/state?token=s3cret')).status).toBe(401);
    expect(
      (await fetchRaw(dashboard.url, '/metrics', { headers: { Authorization: 'Bearer wrong' } }))
        .status,
    ).toBe(401);
    expect(
      (
        await fetchRaw(dashboard.url, '/metrics', {
          headers: { Authorization: 'Bearer s3cret token' },
        })
      ).status,
    ).toBe(200);
    const page = await fetchRaw(dashboard.url, '/?token=s3cret%20token');
    expect(page.status).toBe(200);
    const cookie = String(page.headers['set-cookie']).split(';')[0]!;
    expect(page.headers['set-cookie']?.[0]).toMatch(/HttpOnly; SameSite=Strict/);
    expect(
      (await fetchRaw(dashboard.url, '/api/state', { headers: { Cookie: cookie } })).status,
    ).toBe(200);

    const stream = openStream(dashboard.url);
    await stream.until(() => stream.events().length === 6);
    stream.close();
  });

  it('refuses to listen beyond loopback without a token, and allows it with one', async () => {
    await expect(serve(sampleLog(), { listen: '0.0.0.0:0' })).rejects.toThrow(
      /0\.0\.0\.0:0 is reachable from other machines; set --dashboard-token/,
    );
    await expect(serve(sampleLog(), { listen: '[::]:0' })).rejects.toThrow(/--dashboard-token/);
    await expect(serve(sampleLog(), { listen: 'example.com:0' })).rejects.toThrow(
      /--dashboard-token/,
    );
    const dashboard = await serve(sampleLog(), { listen: '0.0.0.0:0', token: 't' });
    const port = new URL(dashboard.url).port;
    expect((await fetchRaw(`http://127.0.0.1:${port}/`, '/metrics?token=t')).status).toBe(200);
    expect((await fetchRaw(`http://127.0.0.1:${port}/`, '/metrics')).status).toBe(401);
  });

  it('without a token, answers only requests addressed to a loopback host (DNS rebinding)', async () => {
    const dashboard = await serve(sampleLog());
    expect(
      (await fetchRaw(dashboard.url, '/api/state', { headers: { Host: 'attacker.example:80' } }))
        .status,
    ).toBe(403);
    expect(
      (await fetchRaw(dashboard.url, '/api/state', { headers: { Host: 'localhost:7777' } })).status,
    ).toBe(200);
  });

  it('says what is wrong with a bad listen address, a busy port or a missing build', async () => {
    await expect(serve(sampleLog(), { listen: '127.0.0.1' })).rejects.toThrow(/expected HOST:PORT/);
    const busy = await serve(sampleLog());
    await expect(
      serve(sampleLog(), { listen: `127.0.0.1:${new URL(busy.url).port}` }),
    ).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+: the port is in use/);
    await expect(serve(sampleLog(), { staticDir: join(runDir, 'no-dist') })).rejects.toThrow(
      /the web app is not built .*: run pnpm build/,
    );
  });
});
