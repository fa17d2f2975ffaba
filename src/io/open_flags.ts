/**
 * The open(2) flag values of this platform, for layers that must read a caller's flags (the read-only gate of the
 * daemon) without importing node:fs themselves (layering: node:fs is for io/ and cli/).
 */
import { constants as fsc } from 'node:fs';

/** Mask of the access mode bits (O_RDONLY, O_WRONLY, O_RDWR) of open flags. */
export const O_ACCMODE = 3;
export const O_RDONLY = fsc.O_RDONLY;
export const O_TRUNC = fsc.O_TRUNC;
