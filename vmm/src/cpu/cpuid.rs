//! Per-vCPU CPUID: what KVM supports, with this vCPU's APIC ID and the VM's topology (one
//! thread per core, all cores in one package) patched in.

use kvm_bindings::{CpuId, kvm_cpuid_entry2};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_AMD_SIZE: u32 = 0x8000_0008;
const LEAF_AMD_TOPOLOGY: u32 = 0x8000_001e;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Bits needed to number `n` items.
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn patch(e: &mut kvm_cpuid_entry2, apic_id: u32, cpus: u32) {
    match e.function {
        LEAF_FEATURES => {
            e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | ((cpus & 0xff) << 16);
            e.ecx |= ECX_HYPERVISOR;
            if cpus > 1 {
                e.edx |= EDX_HTT;
            } else {
                e.edx &= !EDX_HTT;
            }
        }
        LEAF_CACHE_PARAMS => {
            // Cores per package - 1 in EAX[31:26]; threads sharing the cache in EAX[25:14].
            let cache_level = (e.eax >> 5) & 0x7;
            let sharing = if cache_level >= 3 { cpus - 1 } else { 0 };
            e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((cpus - 1) & 0x3f) << 26);
        }
        LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
            e.edx = apic_id;
            match e.index {
                0 => {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = (LEVEL_TYPE_SMT << 8) | e.index;
                }
                1 => {
                    e.eax = bits_for(cpus);
                    e.ebx = cpus;
                    e.ecx = (LEVEL_TYPE_CORE << 8) | e.index;
                }
                _ => {
                    e.eax = 0;
                    e.ebx = 0;
                    e.ecx = e.index;
                }
            }
        }
        LEAF_AMD_SIZE => {
            // NC: cores - 1; ApicIdSize: bits of APIC ID that number cores.
            e.ecx = (e.ecx & !0xf0ff) | ((cpus - 1) & 0xff) | (bits_for(cpus) << 12);
        }
        LEAF_AMD_TOPOLOGY => {
            e.eax = apic_id;
            e.ebx = apic_id & 0xff; // core id, one thread per core
            e.ecx = 0; // node 0
        }
        _ => {}
    }
}

/// CPUID for vCPU `apic_id` of `cpus`.
pub fn vcpu_cpuid(supported: &CpuId, apic_id: u8, cpus: u8) -> CpuId {
    let mut cpuid = supported.clone();
    for e in cpuid.as_mut_slice() {
        patch(e, u32::from(apic_id), u32::from(cpus.max(1)));
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx: 0x0000_0800,
            ..Default::default()
        }
    }

    fn find(c: &CpuId, f: u32, i: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == f && e.index == i)
            .unwrap()
    }

    #[test]
    fn apic_id_and_topology_per_vcpu() {
        let base = CpuId::from_entries(&[
            entry(1, 0),
            entry(0xb, 0),
            entry(0xb, 1),
            entry(0xb, 2),
            entry(0x8000_0008, 0),
            entry(0x8000_001e, 0),
        ])
        .unwrap();
        let c = vcpu_cpuid(&base, 2, 3);
        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ebx >> 24, 2);
        assert_eq!((l1.ebx >> 16) & 0xff, 3);
        assert_eq!(l1.ebx & 0xffff, 0x800, "CLFLUSH size kept");
        assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(l1.edx & EDX_HTT, 0);
        let smt = find(&c, 0xb, 0);
        assert_eq!((smt.ebx, smt.edx, smt.ecx >> 8), (1, 2, 1));
        let core = find(&c, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx >> 8), (2, 3, 2));
        assert_eq!(find(&c, 0xb, 2).ebx, 0);
        assert_eq!(find(&c, 0x8000_0008, 0).ecx & 0xff, 2);
        assert_eq!(find(&c, 0x8000_001e, 0).eax, 2);
    }

    #[test]
    fn single_cpu_has_no_htt() {
        let mut e = entry(1, 0);
        e.edx = EDX_HTT;
        let c = vcpu_cpuid(&CpuId::from_entries(&[e]).unwrap(), 0, 1);
        assert_eq!(find(&c, 1, 0).edx & EDX_HTT, 0);
    }

    #[test]
    fn bits_for_counts() {
        assert_eq!([1, 2, 3, 4, 5, 254].map(bits_for), [0, 1, 2, 2, 3, 8]);
    }
}
