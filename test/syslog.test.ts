/**
 * The daemon's log lines reach syslog / the journal (issue 10 "Logs"): one RFC 3164 datagram per line on an AF_UNIX
 * datagram socket, `<PRI>Mmm dd HH:MM:SS ddumbfs[PID]: HH:MM:SS LVL message`, facility daemon (PRI = 3·8 +
 * severity). A python3 receiver bound on a socket of the test stands in for /dev/log (Node cannot bind an AF_UNIX
 * datagram socket), named to the daemon by $DDUMBFS_SYSLOG_SOCKET. `-o nosyslog` sends nothing; a socket nobody
 * listens on is skipped silently. Needs dist/, root, /dev/fuse, python3.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syslogDatagram, syslogTimestamp, FACILITY_DAEMON } from '../src/io/syslog.js';
import { makeVolume, mountVolume, unmountAll, waitFor } from './helpers/mount.js';
import { MOUNT_TIMEOUT_MS, TEST_TIMEOUT_MS } from './helpers/timeouts.js';

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('LISTENING', flush=True)
while True:
    print(json.dumps(s.recv(65536).decode('latin-1')), flush=True)
`;

let work: string;
const children: ChildProcess[] = [];
let count = 0;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-syslog-'));
});

afterAll(async () => {
  delete process.env.DDUMBFS_SYSLOG_SOCKET;
  await unmountAll();
  for (const c of children) c.kill();
  fs.rmSync(work, { recursive: true, force: true });
});

/** A datagram receiver bound at `socketPath`; `messages()` are the datagrams so far. */
async function receiver(socketPath: string): Promise<() => string[]> {
  const child = spawn('python3', ['-c', RECEIVER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  expect(await waitFor(() => out.startsWith('LISTENING\n'), MOUNT_TIMEOUT_MS)).toBe(true);
  return () => out.split('\n').slice(1).filter((l) => l !== '').map((l) => JSON.parse(l) as string);
}

/** A fresh volume and mount point. */
async function volume(): Promise<{ parent: string; mnt: string }> {
  const parent = path.join(work, `vol-${count}`);
  const mnt = path.join(work, `mnt-${count++}`);
  fs.mkdirSync(parent);
  fs.mkdirSync(mnt);
  await makeVolume(parent, { blockSize: 4096, size: '4M' });
  return { parent, mnt };
}

describe('syslog datagrams', () => {
  it('RFC 3164 framing: priority, space-padded day, ident[pid], text without its newline, raw bytes kept', () => {
    const t = new Date(2026, 11, 3, 7, 5, 9);
    expect(syslogTimestamp(t)).toBe('Dec  3 07:05:09');
    const d = syslogDatagram(FACILITY_DAEMON, 4, t, 'ddumbfs', 42, Buffer.from('07:05:09 WAR bad name \xff\n', 'latin1'));
    expect(d.toString('latin1')).toBe('<28>Dec  3 07:05:09 ddumbfs[42]: 07:05:09 WAR bad name \xff');
    expect(syslogDatagram(FACILITY_DAEMON, 6, t, 'ddumbfs', 1, 'x'.repeat(10_000)).length).toBe(8192);
  });
});

describe('the daemon logs to syslog', () => {
  it('mount and unmount lines arrive with facility daemon and the daemon\'s pid; -o nosyslog sends none', { timeout: TEST_TIMEOUT_MS }, async () => {
    const socketPath = path.join(work, 'log.sock');
    const messages = await receiver(socketPath);
    process.env.DDUMBFS_SYSLOG_SOCKET = socketPath;
    try {
      const v = await volume();
      const m = await mountVolume(v.parent, v.mnt);
      const mounted = new RegExp(`^<30>[A-Z][a-z]{2} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d ddumbfs\\[${m.pid}\\]: \\d\\d:\\d\\d:\\d\\d INF .*filesystem ${v.parent} mounted on ${v.mnt}$`);
      expect(await waitFor(() => messages().some((l) => mounted.test(l)), MOUNT_TIMEOUT_MS), messages().join('\n')).toBe(true);
      await m.unmount();
      const unmounted = new RegExp(`^<30>.* ddumbfs\\[${m.pid}\\]: \\d\\d:\\d\\d:\\d\\d INF filesystem ${v.parent} unmounted$`);
      expect(await waitFor(() => messages().some((l) => unmounted.test(l)), MOUNT_TIMEOUT_MS), messages().join('\n')).toBe(true);
      // every datagram is one line of ours
      for (const l of messages()) expect(l).toMatch(/^<(2[4-9]|3[01])>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ddumbfs\[\d+\]: \d\d:\d\d:\d\d (ERR|WAR|NOT|INF|DEB) /);

      const before = messages().length;
      const quiet = await volume();
      const q = await mountVolume(quiet.parent, quiet.mnt, ['nosyslog']);
      await q.unmount();
      expect(q.stderr()).toMatch(/ INF filesystem .* unmounted/);
      // the receiver has had every datagram of the first daemon; none of this one's came
      expect(messages().slice(before).filter((l) => l.includes(`ddumbfs[${q.pid}]`))).toEqual([]);
    } finally {
      delete process.env.DDUMBFS_SYSLOG_SOCKET;
    }
  });

  it('a socket nobody listens on is skipped: the mount works and logs to its file', { timeout: TEST_TIMEOUT_MS }, async () => {
    process.env.DDUMBFS_SYSLOG_SOCKET = path.join(work, 'nobody.sock');
    try {
      const v = await volume();
      const m = await mountVolume(v.parent, v.mnt);
      await m.unmount();
      expect(await m.exited).toBe(0);
      expect(m.stderr()).not.toMatch(/nobody\.sock| ERR | WAR /);
      expect(fs.readFileSync(path.join(v.parent, 'ddfsroot', '.ddumbfs', 'ddumbfs.log'), 'utf8')).toMatch(/ INF filesystem .* unmounted/);
    } finally {
      delete process.env.DDUMBFS_SYSLOG_SOCKET;
    }
  });
});
