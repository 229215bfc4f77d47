{
  # The addon always builds. With Debian's libxen-dev headers it carries the Xen bindings
  # (libraries are dlopen()ed at run time, so no Xen is needed to load it); without them
  # every Xen call reports that the addon was built without Xen headers.
  'variables': {
    'have_xen_headers%': '<!(test -f /usr/include/xenctrl.h -a -f /usr/include/xenforeignmemory.h -a -f /usr/include/xenstore.h && echo 1 || echo 0)',
    # The addon takes OpenSSL from the Node binary it is loaded into; the page client's own test
    # runs without Node and links the system's libcrypto (libssl-dev).
    'have_libcrypto%': '<!(test -f /usr/include/openssl/evp.h && echo 1 || echo 0)',
  },
  # Shared by the addon and the native unit tests.
  'target_defaults': {
    'cflags!': ['-fno-exceptions'],
    'cflags_cc!': ['-fno-exceptions', '-std=gnu++17', '-std=c++17'],
    # Xen's headers have no extern "C" guards of their own and use GNU extensions.
    'cflags_cc': ['-std=gnu++17', '-g', '-fexceptions', '-Wall', '-Wextra', '-Wno-unused-parameter', '-Wno-missing-field-initializers'],
    'libraries': ['-ldl'],
  },
  'targets': [{
    'target_name': 'snowflock',
    'sources': ['native/addon.cc', 'native/xen_error.cc', 'native/xen_error_js.cc', 'native/crash_trace.cc', 'native/gcm_frames.cc', 'native/gcm_frames_binding.cc', 'native/tcp_listener.cc'],
    'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")"],
    'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS'],
    'cflags_cc': ['-rdynamic'],
    'ldflags': ['-rdynamic'],
    'conditions': [
      ['have_xen_headers==1', {
        'defines': ['SNOWFLOCK_HAVE_XEN=1'],
        'sources': [
          'native/xen_libs.cc',
          'native/xen_logger.cc',
          'native/xc_handle.cc',
          'native/host_info.cc',
          'native/domains.cc',
          'native/interfaces.cc',
          'native/feature_probe.cc',
          'native/probe_domain.cc',
          'native/xen_control.cc',
          'native/xenstore.cc',
          'native/foreign_memory.cc',
          'native/domain_state.cc',
          'native/suspend_cancel.cc',
          'native/suspend_watch.cc',
          'native/domain_builder.cc',
          'native/pv_stream.cc',
          'native/build_spec.cc',
          'native/paging_hypercalls.cc',
          'native/vm_event_channel.cc',
          'native/fault_backend.cc',
          'native/paging_backend.cc',
          'native/access_backend.cc',
          'native/page_client.cc',
          'native/memtap.cc',
          'native/memtap_binding.cc',
        ],
      }, {
        'sources': ['native/no_xen.cc'],
      }],
    ],
  }, {
    # The crash handler against a malloc that must not be called while crashing; no Xen.
    # test/unit/native/crash-trace.test.ts runs build/Release/crash_trace_test.
    'target_name': 'crash_trace_test',
    'type': 'executable',
    'sources': ['native/test/crash_trace_test.cc', 'native/crash_trace.cc'],
    'ldflags': ['-rdynamic'],
  }],
  'conditions': [
    # Native unit tests: the Xen-facing C++ against fake Xen libraries, no Node, no Xen.
    # build/Release/access_backend_test prints TAP; test/unit/native runs it.
    ['have_xen_headers==1', {
      'targets': [{
        'target_name': 'access_backend_test',
        'type': 'executable',
        'defines': ['SNOWFLOCK_HAVE_XEN=1'],
        'sources': [
          'native/test/access_backend_test.cc',
          'native/test/fake_xen.cc',
          'native/access_backend.cc',
          'native/fault_backend.cc',
          'native/paging_backend.cc',
          'native/paging_hypercalls.cc',
          'native/vm_event_channel.cc',
          'native/foreign_memory.cc',
          'native/xen_error.cc',
          'native/xen_logger.cc',
          'native/xen_libs.cc',
        ],
      }, {
        # Capture's scan of guest memory (domain_state.cc) against the same fakes.
        'target_name': 'domain_scan_test',
        'type': 'executable',
        'defines': ['SNOWFLOCK_HAVE_XEN=1', 'SNOWFLOCK_WITHOUT_JS=1'],
        'sources': [
          'native/test/domain_scan_test.cc',
          'native/test/fake_xen.cc',
          'native/domain_state.cc',
          'native/foreign_memory.cc',
          'native/xen_error.cc',
          'native/xen_logger.cc',
          'native/xen_libs.cc',
        ],
      }],
    }],
    ['have_xen_headers==1 and have_libcrypto==1', {
      'targets': [{
        # The memserver client (sealed page stream) against a TS memserver;
        # test/unit/memtap/native-client.test.ts runs build/Release/page_client_test.
        'target_name': 'page_client_test',
        'type': 'executable',
        'defines': ['SNOWFLOCK_HAVE_XEN=1'],
        'sources': ['native/test/page_client_test.cc', 'native/page_client.cc', 'native/gcm_frames.cc', 'native/xen_error.cc'],
        'libraries': ['-lcrypto'],
      }],
    }],
  ],
}
