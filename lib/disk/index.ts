// Copy-on-write disks on one host (design: docs/disks.md).
export { DiskFamily, type CloneSource, type DiskFamilyOptions, type ForkExport } from './family.js';
export { DiskError, type DiskErrorCode } from './errors.js';
export { listOverlays, listSlices, checkSlices, type OverlayRow, type SliceRow } from './list.js';
export { DEFAULT_DISK_STATE_DIR, type Front, type Head, type Slice } from './record.js';
export type { Psk } from './psk.js';
