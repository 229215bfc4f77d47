// Domains as the hypervisor sees them: list, pause, unpause, destroy.
#pragma once

#include <napi.h>

#include <cstdint>
#include <vector>

#include "xen_headers.h"

namespace snowflock {

std::vector<xc_domaininfo_t> ListDomains(xc_interface* xch);
xc_domaininfo_t DomainInfo(xc_interface* xch, uint32_t domid);  // throws ESRCH for an unknown domain
Napi::Object DomainToJs(Napi::Env env, const xc_domaininfo_t& info);

void PauseDomain(xc_interface* xch, uint32_t domid);
void UnpauseDomain(xc_interface* xch, uint32_t domid);
void DestroyDomain(xc_interface* xch, uint32_t domid);

}  // namespace snowflock
