// Xen's public headers, included once for the whole addon.
// They declare C functions without extern "C" guards, so wrap them here.
#pragma once

extern "C" {
#include <xenctrl.h>
#include <xenguest.h>
#include <xencall.h>
#include <xenforeignmemory.h>
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>
#include <xentoollog.h>
#include <xen/hvm/params.h>
#include <xen/hvm/save.h>
#include <xen/memory.h>
#include <xen/vm_event.h>
}
