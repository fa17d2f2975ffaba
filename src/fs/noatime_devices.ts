/**
 * The daemon's device factory: the volume's own (io/device.ts) with O_NOATIME set on every descriptor, so that the
 * daemon's reads of UFS files (header and node list, at open and stat) do not move their atime. The atime of a
 * file is then what its users set (touch, cp -p, tar, rsync), as a backup needs, not the time the daemon last
 * looked at it (relatime would bump it on the first open after a utimens).
 *
 * TODO(io): this belongs in io/device.ts (fileDevices.open with O_NOATIME, retried without it on EPERM); the
 * descriptor is reached here through FileDevice's private `fh`, and nothing happens if that shape changes.
 */
import { fileDevices, type Device, type DeviceFactory } from '../io/device.js';
import { hostSetNoAtime } from './fuse_binding.js';

function fdOf(device: Device): number | null {
  const fh = (device as unknown as { fh?: { fd?: unknown } }).fh;
  return typeof fh?.fd === 'number' ? fh.fd : null;
}

/** `base` with O_NOATIME added to each opened descriptor (best effort: an fcntl failure is ignored). */
export function noAtimeDevices(base: DeviceFactory = fileDevices): DeviceFactory {
  return {
    async open(path, options) {
      const device = await base.open(path, options);
      const fd = fdOf(device);
      if (fd !== null) hostSetNoAtime(fd);
      return device;
    },
  };
}
