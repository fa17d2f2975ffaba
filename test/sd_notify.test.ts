/**
 * The daemon tells systemd when it is ready (issue 10, sd_notify(3)): started with $NOTIFY_SOCKET (a path or an
 * abstract @name, as systemd's Type=notify sets it), it sends "READY=1" with MAINPID = the serving process once the
 * mount is served, and "STOPPING=1" after the unmount. A python3 AF_UNIX datagram receiver stands in for systemd
 * (Node has no such socket). Needs dist/, root, /dev/fuse, python3.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DDUMBFS_BIN, isMounted, makeVolume, sh, waitFor } from './helpers/mount.js';
import { EXIT_TIMEOUT_MS, MOUNT_TIMEOUT_MS, UNMOUNT_TIMEOUT_MS } from './helpers/timeouts.js';

const RECEIVER = `
import json, socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(('\\0' + name[1:]) if name.startswith('@') else name)
print('LISTENING', flush=True)
while True:
    data = s.recv(4096).decode()
    print(json.dumps(data), flush=True)
    if 'STOPPING=1' in data:
        break
`;

let work: string;
let counter = 0;
const children: ChildProcess[] = [];
const mounts: string[] = [];

/** A receiver on `name`; `messages()` are the datagrams so far. */
async function receiver(name: string): Promise<{ messages: () => string[]; child: ChildProcess }> {
  const child = spawn('python3', ['-c', RECEIVER, name], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  expect(await waitFor(() => out.startsWith('LISTENING\n'), MOUNT_TIMEOUT_MS)).toBe(true);
  return {
    child,
    messages: () => out.split('\n').slice(1).filter((l) => l !== '').map((l) => JSON.parse(l) as string),
  };
}

function fields(message: string): Record<string, string> {
  return Object.fromEntries(message.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function freshVolume(): Promise<{ parent: string; mnt: string }> {
  const dir = path.join(work, `case${counter++}`);
  const parent = path.join(dir, 'parent');
  const mnt = path.join(dir, 'mnt');
  await fsp.mkdir(parent, { recursive: true });
  await fsp.mkdir(mnt);
  await makeVolume(parent, { blockSize: '4k', size: '64m' });
  mounts.push(mnt);
  return { parent, mnt };
}

describe('sd_notify: READY=1 once served, STOPPING=1 after the unmount', () => {
  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-notify-'));
  });
  afterEach(async () => {
    for (const mnt of mounts.splice(0)) {
      if (isMounted(mnt)) await sh('fusermount', ['-u', '-z', mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
    }
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  afterAll(async () => {
    await fsp.rm(work, { recursive: true, force: true });
  });

  it('in the foreground (-f, a Type=notify service), on a socket path', async () => {
    const { parent, mnt } = await freshVolume();
    const socketPath = path.join(work, 'notify.sock');
    const rx = await receiver(socketPath);
    const daemon = spawn(process.execPath, [DDUMBFS_BIN, parent, mnt, '-f'], { stdio: 'ignore', env: { ...process.env, NOTIFY_SOCKET: socketPath } });
    children.push(daemon);
    const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
    expect(await waitFor(() => rx.messages().length > 0, MOUNT_TIMEOUT_MS)).toBe(true);
    const ready = fields(rx.messages()[0]!);
    expect(ready.READY).toBe('1');
    expect(Number(ready.MAINPID)).toBe(daemon.pid);
    expect(ready.STATUS).toBe(`serving ${parent} on ${mnt}`);
    // told only once it serves
    expect(isMounted(mnt)).toBe(true);
    expect(fs.readdirSync(mnt)).toContain('.ddumbfs');
    const u = await sh('fusermount', ['-u', mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
    expect(u.code, u.stderr).toBe(0);
    expect(await exited).toBe(0);
    expect(await waitFor(() => rx.messages().length > 1, EXIT_TIMEOUT_MS)).toBe(true);
    expect(fields(rx.messages()[1]!)).toMatchObject({ STOPPING: '1', STATUS: 'unmounted, exit 0' });
    expect(rx.messages().length).toBe(2);
  });

  it('detached (mount(8), Type=forking): the serving process sends it, on an abstract socket', async () => {
    const { parent, mnt } = await freshVolume();
    const name = `@ddfs-notify-test-${process.pid}-${Date.now()}`;
    const rx = await receiver(name);
    const r = await sh(DDUMBFS_BIN, [parent, mnt], { env: { ...process.env, NOTIFY_SOCKET: name } });
    expect(r.code, r.stderr).toBe(0);
    // the command returned once served; READY=1 was sent before
    expect(isMounted(mnt)).toBe(true);
    expect(await waitFor(() => rx.messages().length > 0, MOUNT_TIMEOUT_MS)).toBe(true);
    const ready = fields(rx.messages()[0]!);
    expect(ready.READY).toBe('1');
    const pid = Number(ready.MAINPID);
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain(mnt);
    const u = await sh('fusermount', ['-u', mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
    expect(u.code, u.stderr).toBe(0);
    expect(await waitFor(() => !alive(pid), EXIT_TIMEOUT_MS)).toBe(true);
    expect(await waitFor(() => rx.messages().length > 1, EXIT_TIMEOUT_MS)).toBe(true);
    expect(fields(rx.messages()[1]!).STOPPING).toBe('1');
  });

  it('a socket nobody listens on is logged, the mount goes on', async () => {
    const { parent, mnt } = await freshVolume();
    const r = await sh(DDUMBFS_BIN, [parent, mnt], { env: { ...process.env, NOTIFY_SOCKET: path.join(work, 'nobody.sock') } });
    expect(r.code, r.stderr).toBe(0);
    expect(isMounted(mnt)).toBe(true);
    expect(r.stderr).toMatch(/WAR NOTIFY_SOCKET=.*nobody\.sock: cannot notify the service manager: ENOENT/);
    const log = fs.readFileSync(path.join(parent, 'ddfsroot', '.ddumbfs', 'ddumbfs.log'), 'utf8');
    expect(log).toMatch(/cannot notify the service manager: ENOENT/);
    // still served
    await fsp.writeFile(path.join(mnt, 'f'), 'x');
    expect(fs.readFileSync(path.join(mnt, 'f'), 'utf8')).toBe('x');
    const u = await sh('fusermount', ['-u', mnt], { timeoutMs: UNMOUNT_TIMEOUT_MS });
    expect(u.code, u.stderr).toBe(0);
  });
});
