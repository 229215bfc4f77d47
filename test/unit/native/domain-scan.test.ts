// Capture's scan of a domain's memory map (native/domain_state.cc) against fake Xen libraries:
// a guest that raises its highest gfn (here to 2^34) gets its capture refused before any map
// call instead of hours of scanning; scans stop when cancelled and leave worker threads free.
import { describeNativeTap } from './native-tap.js';

describeNativeTap('domain_scan_test', 'guest memory scan against fake Xen (native)', [
  "an honest domain's scan finds its RAM and special pages in 4 map calls",
  'a highest gfn of 2^34 is refused with E2BIG before any map call',
  'a highest gfn just below the limit is scanned in bounded work',
  'keep_going() returning false stops the scan with ECANCELED before the next batch',
  'CancelDomainScans stops a running scan of that domain',
  'with kMaxConcurrentScans scans running, another is refused with EBUSY and maps nothing',
]);
