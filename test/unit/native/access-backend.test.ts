// The mem_access fault backend (native/access_backend.cc) against fake Xen libraries: a C++
// executable built by node-gyp next to the addon (binding.gyp, native/test/) that prints TAP.
import { describeNativeTap } from './native-tap.js';

describeNativeTap('access_backend_test', 'mem_access backend against fake Xen (native)', [
  "open enables the monitor and binds its ring's event channel",
  'open refuses to take over a ring',
  'open reports a failed xc_monitor_enable',
  'open with a failed event channel bind unmaps the ring and disables the monitor',
  'Remove restricts each run of consecutive gfns with one xc_set_mem_access',
  'Remove: EINVAL on the first run means no mem_access here (Intel EPT only)',
  "Remove: a failure on a later run refuses exactly that run's gfns",
  'Install copies each staging page byte-exactly into its gfn',
  'Install lifts access to rwx once per run',
  'Install reports a page that did not map for that page only, and leaves it restricted',
  'Install reports -errno for every page of a run whose lift failed',
  "Install with a failed foreign map throws with Xen's log line and lifts nothing",
  'FaultGfn takes the gfn of a mem_access request popped from the ring',
  'FaultGfn refuses requests of other reasons',
  "the channel unmasks the pending port and notifies Xen's end",
  'closing disables the monitor, unbinds the event channel and unmaps the ring',
]);
