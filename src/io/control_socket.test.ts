import { afterEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Socket } from 'node:net';
import { connectControlSocket, listenControlSocket } from './control_socket.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-control-'));
  dirs.push(d);
  return d;
}

afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** Echo the first chunk back and end. */
function echo(socket: Socket): void {
  socket.once('data', (c: Buffer) => socket.end(c));
}

async function roundTrip(dir: string): Promise<string> {
  const c = await connectControlSocket(dir, 'control');
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    c.on('data', (b: Buffer) => chunks.push(b));
    c.on('end', () => {
      c.destroy();
      resolve(Buffer.concat(chunks).toString());
    });
    c.write('ping');
  });
}

describe('the control socket (io/control_socket.ts)', () => {
  it('is created 0600 in a new 0700 directory, serves connections, and is removed at close', async () => {
    const dir = path.join(tempDir(), 'ddfsmirror');
    const l = await listenControlSocket(dir, 'control', echo);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    const st = fs.lstatSync(path.join(dir, 'control'));
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(await roundTrip(dir)).toBe('ping');
    await l.close();
    expect(fs.existsSync(path.join(dir, 'control'))).toBe(false);
    expect(fs.existsSync(dir)).toBe(false); // made for the socket alone, and empty again
    fs.mkdirSync(dir);
    await expect(connectControlSocket(dir, 'control')).rejects.toThrow(/control: the daemon does not serve a control socket$/);
  });

  it('replaces a stale socket file (nobody accepts on it), refuses a live one', async () => {
    const dir = tempDir();
    const stale = path.join(dir, 'control');
    // a socket bound by a process that is gone: the file stays, connect answers ECONNREFUSED
    await promisify(execFile)('python3', ['-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stale)})`]);
    expect(fs.lstatSync(stale).isSocket()).toBe(true);
    const l = await listenControlSocket(dir, 'control', echo);
    expect(await roundTrip(dir)).toBe('ping');
    await expect(listenControlSocket(dir, 'control', echo)).rejects.toThrow(/control: another daemon serves this control socket$/);
    expect(await roundTrip(dir)).toBe('ping');
    await l.close();
  });

  it('never follows a symlink: one planted at the directory is refused, one at the socket name is removed, its target untouched', async () => {
    const base = tempDir();
    const elsewhere = path.join(base, 'elsewhere');
    fs.mkdirSync(elsewhere);
    fs.symlinkSync(elsewhere, path.join(base, 'ddfsmirror'));
    await expect(listenControlSocket(path.join(base, 'ddfsmirror'), 'control', echo)).rejects.toThrow(/ddfsmirror: not a directory \(a symbolic link\?\): refused$/);
    await expect(connectControlSocket(path.join(base, 'ddfsmirror'), 'control')).rejects.toThrow(/refused$/);
    expect(fs.readdirSync(elsewhere)).toEqual([]);

    const dir = path.join(base, 'real');
    fs.mkdirSync(dir);
    const target = path.join(base, 'target');
    fs.writeFileSync(target, 'keep');
    fs.symlinkSync(target, path.join(dir, 'control'));
    const l = await listenControlSocket(dir, 'control', echo);
    expect(fs.lstatSync(path.join(dir, 'control')).isSocket()).toBe(true);
    expect(fs.readFileSync(target, 'utf8')).toBe('keep');
    await l.close();
  });

  it('refuses a regular file at the socket name and leaves it', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'control'), 'data');
    await expect(listenControlSocket(dir, 'control', echo)).rejects.toThrow(/control: not a socket: refused \(remove it if no ddumbfs daemon runs\)$/);
    expect(fs.readFileSync(path.join(dir, 'control'), 'utf8')).toBe('data');
  });
});
