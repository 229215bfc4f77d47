// snowflock's public TypeScript API for dom0 programs. The guest-side sf_* API lives in lib/api.
export { openXen, withXen, XenUnavailableError } from './xen/control.js';
export { loadAddon, isNativeXenError } from './xen/native.js';
export type { Addon, DomainInfo, FeatureReport, NativeXenError, PhysInfo, XenControl, XenVersionInfo } from './xen/native.js';
export { runDoctor, type Check } from './doctor/index.js';
