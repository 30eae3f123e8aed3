/*
 * Freestanding x86-64 test guest for the vmm (a PVH ELF, so QEMU can boot it too).
 *
 * It reports on the UART (0x3f8) and leaves through the debug-exit port (0xf4): value 0 is
 * PASS, 1 is FAIL, 2 is an unexpected CPU exception. The kernel command line (PVH start info)
 * picks what it does:
 *   (default)      ACPI + MP tables, PCI over conf1 and ECAM, every virtio-blk disk driven by
 *                  polling and by MSI-X interrupt (read, write, flush, get-id, write-zeroes,
 *                  read-only refusal, garbage requests), then one line of serial input.
 *   tables         only the ACPI / MP table and PCI checks.
 *   bench          print one line and exit; with "hold", print and halt forever instead.
 *   poweroff       power off through the FADT's sleep control register and _S5.
 *   reboot         reset through the i8042.
 *   crash          triple fault.
 *   idle           print and halt with interrupts off (for console tests).
 *   memtouch=N     write N MiB four times and read it back, then exit (memory speed probe).
 *   net            exchange frames with a peer on the host's TAP (see test_net()); with
 *                  "nobufs", set the NIC up without receive buffers and halt; with "rxidle",
 *                  post receive buffers and halt.
 *   fwcfg          read the fw_cfg signature and directory and each Ignition file through the
 *                  data port, rep insb and DMA; print them (fwcfg_empty: none expected).
 *   button         wait for the ACPI power button (GED interrupt and register), then power
 *                  off (ignorebutton: halt instead, to test the shutdown timeout).
 *   echo           before the other modes: read one line of serial input and print it.
 *   p9read=PATH    9P2000.L client on the first share: read PATH (disk pattern), try escapes
 *                  (p9ro: and a mkdir) and a malformed frame.
 *   blkbench, p9bench=PATH   timed sequential reads (kvmclock) of the first disk / PATH.
 *   blkstream      numbered 4 KiB blocks to the first disk, a FLUSH every 8, "guest: flushed N"
 *                  after each (pace_us=N between blocks), for kill -9 tests.
 *   blkfull        write every block of the first disk (its image on a full filesystem), report
 *                  the IOERRs, flush, read back; with "hold", then wait for the power button.
 *   attack         a malicious driver on virtio-blk, -rng and -9p (broken chains, indirect
 *                  tables, runaway avail indexes, misaligned or outside rings, odd queue sizes,
 *                  stray notifications), each outcome printed; "attack_net" adds virtio-net;
 *                  finally the second disk must read correctly.
 * Options: expect_cpus=N (fail unless ACPI and the MP table both show N CPUs), noinput.
 *
 * Disk contents the host prepares: byte j of sector s is (s * 3 + j) & 0xff.
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long usize;

#define NULL ((void *)0)

/* ---- port and memory I/O ---- */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u8 rd8(u64 a) { return *(volatile u8 *)a; }
static inline u16 rd16(u64 a) { return *(volatile u16 *)a; }
static inline u32 rd32(u64 a) { return *(volatile u32 *)a; }
static inline void wr8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void wr16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void wr32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void wr64(u64 a, u64 v) { wr32(a, (u32)v); wr32(a + 4, (u32)(v >> 32)); }
static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

void *memset(void *d, int c, usize n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, usize n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }
int memcmp(const void *a, const void *b, usize n) {
    const u8 *p = a, *q = b;
    for (; n; n--, p++, q++) if (*p != *q) return *p - *q;
    return 0;
}
static usize strlen(const char *s) { usize n = 0; while (s[n]) n++; return n; }

/* ---- UART and exit ---- */

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4

static void putc(char c) {
    while (!(inb(COM1 + 5) & 0x20)) cpu_relax();
    outb(COM1, (u8)c);
}
static void puts(const char *s) { while (*s) putc(*s++); }
static void put_hex(u64 v) {
    puts("0x");
    int started = 0;
    for (int i = 60; i >= 0; i -= 4) {
        int d = (v >> i) & 0xf;
        if (d || started || i == 0) { putc("0123456789abcdef"[d]); started = 1; }
    }
}
static void put_dec(u64 v) {
    char buf[24];
    int i = 0;
    do { buf[i++] = '0' + v % 10; v /= 10; } while (v);
    while (i) putc(buf[--i]);
}

static __attribute__((noreturn)) void guest_exit(u8 code) {
    outb(DEBUG_EXIT, code);
    for (;;) __asm__ volatile("cli; hlt");
}

static int failures;
static void fail(const char *what) {
    puts("guest: FAIL: ");
    puts(what);
    putc('\n');
    failures++;
}
#define CHECK(cond, what) do { if (!(cond)) fail(what); } while (0)

void guest_exception(u64 vector, u64 error, u64 rip) {
    puts("guest: exception ");
    put_dec(vector);
    puts(" error ");
    put_hex(error);
    puts(" rip ");
    put_hex(rip);
    putc('\n');
    guest_exit(2);
}

/* ---- command line ---- */

struct hvm_start_info {
    u32 magic, version, flags, nr_modules;
    u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    u32 memmap_entries, reserved;
};

static const char *cmdline = "";

/* The value after "key=" or "" for a bare "key"; NULL if absent. */
static const char *option(const char *key) {
    usize k = strlen(key);
    const char *p = cmdline;
    while (*p) {
        while (*p == ' ') p++;
        const char *w = p;
        while (*p && *p != ' ') p++;
        if ((usize)(p - w) >= k && memcmp(w, key, k) == 0) {
            if ((usize)(p - w) == k) return "";
            if (w[k] == '=') return w + k + 1;
        }
    }
    return NULL;
}
static u64 option_num(const char *key, u64 dflt) {
    const char *v = option(key);
    if (!v || !*v) return dflt;
    u64 n = 0;
    while (*v >= '0' && *v <= '9') n = n * 10 + (u64)(*v++ - '0');
    return n;
}

/* ---- interrupts: IDT, LAPIC, PIC ---- */

struct idt_entry { u16 off_lo, sel; u8 ist, type; u16 off_mid; u32 off_hi, zero; } __attribute__((packed));
static struct idt_entry idt[256] __attribute__((aligned(16)));
extern u64 exc_stubs[32];
extern void isr_msi(void), isr_timer(void), isr_spurious(void);

#define MSI_VECTOR 0x40
#define TIMER_VECTOR 0x41
#define LAPIC 0xfee00000ULL

static volatile u32 msi_count, timer_fired;

void msi_handler(void) { msi_count++; wr32(LAPIC + 0xb0, 0); }
void timer_handler(void) { timer_fired = 1; wr32(LAPIC + 0xb0, 0); }

static void set_gate(int v, u64 handler) {
    idt[v].off_lo = (u16)handler;
    idt[v].sel = 0x08;
    idt[v].ist = 0;
    idt[v].type = 0x8e;
    idt[v].off_mid = (u16)(handler >> 16);
    idt[v].off_hi = (u32)(handler >> 32);
    idt[v].zero = 0;
}

static void setup_interrupts(void) {
    for (int i = 0; i < 32; i++) set_gate(i, exc_stubs[i]);
    set_gate(MSI_VECTOR, (u64)isr_msi);
    set_gate(TIMER_VECTOR, (u64)isr_timer);
    set_gate(0xff, (u64)isr_spurious);
    struct { u16 limit; u64 base; } __attribute__((packed)) d = { sizeof(idt) - 1, (u64)idt };
    __asm__ volatile("lidt %0" ::"m"(d));
    /* Mask the 8259s: only the LAPIC delivers here. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    /* Software-enable the LAPIC, spurious vector 0xff. */
    wr32(LAPIC + 0xf0, 0x1ff);
}

/* One-shot LAPIC timer as a watchdog for interrupt waits. */
static void timer_arm(u32 count) {
    timer_fired = 0;
    wr32(LAPIC + 0x3e0, 0xb);           /* divide by 1 */
    wr32(LAPIC + 0x320, TIMER_VECTOR);  /* one-shot */
    wr32(LAPIC + 0x380, count);
}
static void timer_disarm(void) { wr32(LAPIC + 0x380, 0); wr32(LAPIC + 0x320, 0x10000); }

/* ---- ACPI and MP tables ---- */

static u8 sum(u64 a, u32 len) { u8 s = 0; for (u32 i = 0; i < len; i++) s += rd8(a + i); return s; }

struct acpi_info {
    int cpus;
    u64 ecam;
    u16 sleep_port;
    u8 s5_type;
    int ok;
};

static void parse_dsdt_s5(u64 dsdt, struct acpi_info *ai) {
    u32 len = rd32(dsdt + 4);
    for (u32 i = 36; i + 8 < len; i++) {
        if (rd8(dsdt + i) == '_' && rd8(dsdt + i + 1) == 'S' && rd8(dsdt + i + 2) == '5' && rd8(dsdt + i + 3) == '_') {
            /* PackageOp, PkgLength (1 byte), NumElements, then the first element. */
            u64 p = dsdt + i + 4;
            if (rd8(p) != 0x12) continue;
            u8 first = rd8(p + 3);
            ai->s5_type = first == 0x0a ? rd8(p + 4) : (first == 0x01 ? 1 : 0);
            return;
        }
    }
}

static void check_acpi(struct hvm_start_info *si, struct acpi_info *ai) {
    memset(ai, 0, sizeof(*ai));
    u64 rsdp = si->rsdp_paddr;
    if (!rsdp) {
        for (u64 a = 0xe0000; a < 0x100000; a += 16)
            if (rd32(a) == 0x20445352 && rd32(a + 4) == 0x20525450) { rsdp = a; break; }
    }
    if (!rsdp) { fail("no RSDP"); return; }
    CHECK(sum(rsdp, 20) == 0 && sum(rsdp, 36) == 0, "RSDP checksum");
    u64 xsdt = *(volatile u64 *)(rsdp + 24);
    CHECK(rd32(xsdt) == 0x54445358, "XSDT signature");
    u32 xlen = rd32(xsdt + 4);
    CHECK(sum(xsdt, xlen) == 0, "XSDT checksum");
    for (u32 off = 36; off + 8 <= xlen; off += 8) {
        u64 t = *(volatile u64 *)(xsdt + off);
        u32 tlen = rd32(t + 4);
        CHECK(sum(t, tlen) == 0, "table checksum");
        u32 sig = rd32(t);
        if (sig == 0x43495041) { /* APIC */
            for (u32 o = 44; o + 2 <= tlen; o += rd8(t + o + 1)) {
                if (rd8(t + o + 1) == 0) break;
                if (rd8(t + o) == 0 && (rd32(t + o + 4) & 1)) ai->cpus++;
            }
        } else if (sig == 0x4746434d) { /* MCFG */
            ai->ecam = *(volatile u64 *)(t + 44);
        } else if (sig == 0x50434146) { /* FACP */
            CHECK(rd32(t + 112) & (1u << 20), "FADT is hardware-reduced");
            ai->sleep_port = rd8(t + 244) == 1 ? (u16)rd32(t + 248) : 0;
            u64 dsdt = *(volatile u64 *)(t + 140);
            CHECK(rd32(dsdt) == 0x54445344 && sum(dsdt, rd32(dsdt + 4)) == 0, "DSDT");
            parse_dsdt_s5(dsdt, ai);
        }
    }
    ai->ok = 1;
    puts("guest: acpi cpus=");
    put_dec(ai->cpus);
    puts(" ecam=");
    put_hex(ai->ecam);
    puts(" sleep_port=");
    put_hex(ai->sleep_port);
    puts(" s5=");
    put_dec(ai->s5_type);
    putc('\n');
}

static int check_mptable(void) {
    for (u64 a = 0xf0000; a < 0x100000; a += 16) {
        if (rd32(a) != 0x5f504d5f) continue; /* "_MP_" */
        CHECK(sum(a, 16) == 0, "MP floating pointer checksum");
        u64 mpc = rd32(a + 4);
        CHECK(rd32(mpc) == 0x504d4350, "MP table signature");
        u16 len = rd16(mpc + 4);
        CHECK(sum(mpc, len) == 0, "MP table checksum");
        int cpus = 0;
        for (u64 o = mpc + 44; o < mpc + len;) {
            u8 type = rd8(o);
            if (type == 0) { if (rd8(o + 3) & 1) cpus++; o += 20; }
            else if (type <= 4) o += 8;
            else { fail("MP table entry type"); break; }
        }
        puts("guest: mptable cpus=");
        put_dec(cpus);
        putc('\n');
        return cpus;
    }
    fail("no MP table");
    return 0;
}

/* ---- PCI ---- */

static u32 conf_read(u8 dev, u16 reg) {
    outl(0xcf8, 0x80000000u | ((u32)dev << 11) | (reg & 0xfc));
    return inl(0xcfc);
}
static void conf_write16(u8 dev, u16 reg, u16 v) {
    outl(0xcf8, 0x80000000u | ((u32)dev << 11) | (reg & 0xfc));
    outw(0xcfc + (reg & 2), v);
}

#define MAX_DISKS 4
static u8 disk_slots[MAX_DISKS];
static int ndisks;
static u8 net_slot; /* the first virtio-net device, for mode "net" */
static int nnets;

static void scan_pci(u64 ecam) {
    for (u8 dev = 0; dev < 32; dev++) {
        u32 id = conf_read(dev, 0);
        if (ecam) CHECK(rd32(ecam + ((u64)dev << 15)) == id, "ECAM and conf1 agree");
        if ((id & 0xffff) == 0xffff) continue;
        puts("guest: pci 00:");
        putc("0123456789abcdef"[dev >> 4]);
        putc("0123456789abcdef"[dev & 15]);
        puts(".0 ");
        put_hex(id & 0xffff);
        putc(':');
        put_hex(id >> 16);
        putc('\n');
        if (id == 0x10421af4 && ndisks < MAX_DISKS) disk_slots[ndisks++] = dev;
        if (id == 0x10411af4 && !nnets++) net_slot = dev;
    }
}

/* ---- virtio-blk over modern virtio-pci ---- */

#define QSIZE 16
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

struct vq_desc { u64 addr; u32 len; u16 flags, next; };
struct vq_avail { u16 flags, idx, ring[QSIZE], used_event; };
struct vq_used_elem { u32 id, len; };
struct vq_used { u16 flags, idx; struct vq_used_elem ring[QSIZE]; u16 avail_event; };

struct blk_req { u32 type, reserved; u64 sector; };

struct vdev {
    u8 slot;
    u64 common, notify, isr, devcfg;
    u32 notify_mult;
    u16 msix_cap;
    u64 msix_table;
    u64 features;
    u16 notify_off;
    struct vq_desc desc[QSIZE] __attribute__((aligned(16)));
    struct vq_avail avail __attribute__((aligned(2)));
    struct vq_used used __attribute__((aligned(4)));
    u16 avail_idx, used_seen;
    struct blk_req req;
    u8 status;
    u8 buf[4096] __attribute__((aligned(512)));
    u8 buf2[512];
};
static struct vdev vdevs[MAX_DISKS] __attribute__((aligned(4096)));

static int virtio_init(struct vdev *d, int index) {
    d->slot = disk_slots[index];
    u64 bar = (conf_read(d->slot, 0x10) & ~0xfULL) | ((u64)conf_read(d->slot, 0x14) << 32);
    u8 cap = conf_read(d->slot, 0x34) & 0xff;
    while (cap) {
        u32 w0 = conf_read(d->slot, cap);
        u8 id = w0 & 0xff, next = (w0 >> 8) & 0xff;
        if (id == 0x09) {
            u8 type = (w0 >> 24) & 0xff;
            u32 off = conf_read(d->slot, cap + 8);
            u64 addr = bar + off;
            if (type == 1) d->common = addr;
            else if (type == 2) { d->notify = addr; d->notify_mult = conf_read(d->slot, cap + 16); }
            else if (type == 3) d->isr = addr;
            else if (type == 4) d->devcfg = addr;
        } else if (id == 0x11) {
            d->msix_cap = cap;
            u32 table = conf_read(d->slot, cap + 4);
            d->msix_table = bar + (table & ~7u);
        }
        cap = next;
    }
    if (!d->common || !d->notify || !d->isr || !d->devcfg || !d->msix_cap) { fail("virtio capabilities"); return 0; }

    u64 c = d->common;
    wr8(c + 0x14, 0);
    CHECK(rd8(c + 0x14) == 0, "reset");
    wr8(c + 0x14, 1 | 2);
    wr32(c + 0x00, 0);
    u64 f = rd32(c + 0x04);
    wr32(c + 0x00, 1);
    f |= (u64)rd32(c + 0x04) << 32;
    d->features = f;
    if (!(f & (1ULL << 32))) { fail("VIRTIO_F_VERSION_1 not offered"); return 0; }
    /* Accept VERSION_1 and the block features we use: FLUSH, RO, DISCARD, WRITE_ZEROES. */
    u64 want = f & ((1ULL << 32) | (1 << 9) | (1 << 5) | (1 << 13) | (1 << 14));
    wr32(c + 0x08, 0);
    wr32(c + 0x0c, (u32)want);
    wr32(c + 0x08, 1);
    wr32(c + 0x0c, (u32)(want >> 32));
    wr8(c + 0x14, 1 | 2 | 8);
    if (!(rd8(c + 0x14) & 8)) { fail("FEATURES_OK refused"); return 0; }

    /* MSI-X: vector 0 -> LAPIC 0, our vector; enable in the capability. */
    wr32(d->msix_table + 0, 0xfee00000);
    wr32(d->msix_table + 4, 0);
    wr32(d->msix_table + 8, MSI_VECTOR);
    wr32(d->msix_table + 12, 0);
    conf_write16(d->slot, d->msix_cap + 2, 0x8000);

    wr16(c + 0x16, 0);
    u16 max = rd16(c + 0x18);
    CHECK(max >= QSIZE, "queue size");
    wr16(c + 0x18, QSIZE);
    wr64(c + 0x20, (u64)d->desc);
    wr64(c + 0x28, (u64)&d->avail);
    wr64(c + 0x30, (u64)&d->used);
    wr16(c + 0x1a, 0);
    CHECK(rd16(c + 0x1a) == 0, "queue MSI-X vector accepted");
    wr16(c + 0x10, 0xffff);
    d->notify_off = rd16(c + 0x1e);
    wr16(c + 0x1c, 1);
    wr8(c + 0x14, 1 | 2 | 4 | 8);
    CHECK(rd8(c + 0x14) == 0xf, "DRIVER_OK");
    return 1;
}

static u64 disk_capacity(struct vdev *d) { return rd32(d->devcfg) | ((u64)rd32(d->devcfg + 4) << 32); }

/* MSI count when the last request was submitted (interrupts are off until we wait, so its
 * completion interrupt stays pending in the LAPIC until then). */
static u32 msi_before;

/* Publishes a chain starting at descriptor 0 and rings the doorbell. */
static void submit(struct vdev *d, u16 head) {
    msi_before = msi_count;
    d->avail.ring[d->avail_idx % QSIZE] = head;
    barrier();
    d->avail_idx++;
    d->avail.idx = d->avail_idx;
    barrier();
    wr16(d->notify + (u64)d->notify_off * d->notify_mult, 0);
}

/* Waits for the next used entry, by polling (interrupts off) or by halting until the MSI. */
static int wait_used(struct vdev *d, int by_interrupt, u32 *len) {
    if (by_interrupt) {
        /* Completions of earlier polled requests may still raise (late) interrupts, so wait
         * for both our completion and an interrupt after submission. */
        timer_arm(0x40000000);
        while ((*(volatile u16 *)&d->used.idx == d->used_seen || msi_count == msi_before) && !timer_fired)
            __asm__ volatile("sti; hlt; cli");
        timer_disarm();
        if (msi_count == msi_before) { fail("no MSI-X interrupt before the watchdog"); return 0; }
        if (*(volatile u16 *)&d->used.idx == d->used_seen) { fail("no completion before the watchdog"); return 0; }
    } else {
        u64 spins = 0;
        while (*(volatile u16 *)&d->used.idx == d->used_seen) {
            cpu_relax();
            if (++spins > 200000000ULL) { fail("polling timed out"); return 0; }
        }
    }
    barrier();
    struct vq_used_elem *e = &d->used.ring[d->used_seen % QSIZE];
    if (len) *len = e->len;
    d->used_seen++;
    return 1;
}

/* header, optional data, status. Returns the status byte (0xee if the device never wrote it). */
static u8 blk_request(struct vdev *d, u32 type, u64 sector, void *data, u32 len, int device_writes, int irq) {
    d->req.type = type;
    d->req.reserved = 0;
    d->req.sector = sector;
    d->status = 0xee;
    int n = 0;
    d->desc[n] = (struct vq_desc){ (u64)&d->req, sizeof(d->req), VIRTQ_DESC_F_NEXT, 1 };
    n++;
    if (len) {
        d->desc[n] = (struct vq_desc){ (u64)data, len, VIRTQ_DESC_F_NEXT | (device_writes ? VIRTQ_DESC_F_WRITE : 0), (u16)(n + 1) };
        n++;
    }
    d->desc[n] = (struct vq_desc){ (u64)&d->status, 1, VIRTQ_DESC_F_WRITE, 0 };
    submit(d, 0);
    if (!wait_used(d, irq, NULL)) return 0xee;
    barrier();
    return d->status;
}

static int pattern_ok(const u8 *buf, u64 sector, u32 sectors) {
    for (u32 s = 0; s < sectors; s++)
        for (u32 j = 0; j < 512; j++)
            if (buf[s * 512 + j] != (u8)((sector + s) * 3 + j)) return 0;
    return 1;
}

static void test_garbage(struct vdev *d) {
    u64 cap = disk_capacity(d);
    /* Past the end of the disk. */
    CHECK(blk_request(d, 0, cap, d->buf, 512, 1, 0) == 1, "read past the end gets IOERR");
    /* A buffer outside guest RAM. */
    CHECK(blk_request(d, 0, 0, (void *)0x7f000000ULL, 512, 1, 0) == 1, "buffer outside RAM gets IOERR");
    /* Length that is not a sector multiple. */
    CHECK(blk_request(d, 0, 0, d->buf, 100, 1, 0) == 1, "odd length gets IOERR");
    /* Unknown request type. */
    CHECK(blk_request(d, 0x99, 0, NULL, 0, 0, 0) == 2, "unknown type gets UNSUPP");
    /* A descriptor that loops to itself: no status possible, but a used entry. */
    d->req.type = 0;
    d->status = 0xee;
    d->desc[0] = (struct vq_desc){ (u64)&d->req, sizeof(d->req), VIRTQ_DESC_F_NEXT, 0 };
    submit(d, 0);
    u32 len = 99;
    CHECK(wait_used(d, 0, &len) && len == 0, "descriptor loop completed with length 0");
    CHECK(d->status == 0xee, "descriptor loop left the status alone");
    /* A next index beyond the queue. */
    d->desc[0] = (struct vq_desc){ (u64)&d->req, sizeof(d->req), VIRTQ_DESC_F_NEXT, 999 };
    submit(d, 0);
    CHECK(wait_used(d, 0, &len) && len == 0, "bad next index completed with length 0");
    /* The device still works. */
    memset(d->buf, 0, 512);
    CHECK(blk_request(d, 0, 7, d->buf, 512, 1, 0) == 0 && pattern_ok(d->buf, 7, 1), "read after garbage");
    puts("guest: garbage requests answered, device still serving\n");
}

static void test_disk(int index) {
    struct vdev *d = &vdevs[index];
    if (!virtio_init(d, index)) return;
    int ro = (d->features >> 5) & 1;
    u64 cap = disk_capacity(d);
    puts("guest: disk");
    put_dec(index);
    puts(" capacity=");
    put_dec(cap);
    puts(" ro=");
    put_dec(ro);
    putc('\n');

    /* GET_ID */
    memset(d->buf, 0, 21);
    u8 st = blk_request(d, 8, 0, d->buf, 20, 1, 0);
    if (st == 0) {
        d->buf[20] = 0;
        puts("guest: disk");
        put_dec(index);
        puts(" id=");
        puts((const char *)d->buf);
        putc('\n');
    } else {
        puts("guest: disk");
        put_dec(index);
        puts(" has no id\n");
    }

    /* Read by polling. */
    memset(d->buf, 0, sizeof(d->buf));
    CHECK(blk_request(d, 0, 0, d->buf, 4096, 1, 0) == 0, "polled read status");
    CHECK(pattern_ok(d->buf, 0, 8), "polled read data");
    /* Read by interrupt. */
    memset(d->buf, 0, sizeof(d->buf));
    CHECK(blk_request(d, 0, 5, d->buf, 1024, 1, 1) == 0, "interrupt read status");
    CHECK(pattern_ok(d->buf, 5, 2), "interrupt read data");

    if (ro) {
        CHECK(blk_request(d, 1, 0, d->buf2, 512, 0, 0) == 1, "write to read-only disk gets IOERR");
        CHECK(blk_request(d, 4, 0, NULL, 0, 0, 0) == 1, "flush of read-only disk gets IOERR");
        memset(d->buf, 0, 512);
        CHECK(blk_request(d, 0, 0, d->buf, 512, 1, 0) == 0 && pattern_ok(d->buf, 0, 1), "read-only disk unchanged");
    } else {
        /* Write by interrupt, flush, read back by polling. */
        const char *msg = "written by the test guest";
        for (int i = 0; i < 512; i++) d->buf2[i] = (u8)msg[i % 25];
        CHECK(blk_request(d, 1, 100, d->buf2, 512, 0, 1) == 0, "write status");
        CHECK(blk_request(d, 4, 0, NULL, 0, 0, 1) == 0, "flush status");
        memset(d->buf, 0, 512);
        CHECK(blk_request(d, 0, 100, d->buf, 512, 1, 0) == 0 && memcmp(d->buf, d->buf2, 512) == 0, "read back");
        /* Write-zeroes with unmap over 4 KiB at sector 2048: a hole in the image. */
        if ((d->features & (1ULL << 14)) && cap >= 2056) {
            struct { u64 sector; u32 num, flags; } range = { 2048, 8, 1 };
            memcpy(d->buf2, &range, sizeof(range));
            CHECK(blk_request(d, 13, 0, d->buf2, 16, 0, 0) == 0, "write-zeroes status");
            memset(d->buf, 0xff, 4096);
            CHECK(blk_request(d, 0, 2048, d->buf, 4096, 1, 0) == 0, "read zeroed range");
            int zero = 1;
            for (int i = 0; i < 4096; i++) if (d->buf[i]) zero = 0;
            CHECK(zero, "write-zeroes range reads as zeroes");
        }
        test_garbage(d);
    }
    puts("guest: disk");
    put_dec(index);
    puts(" done\n");
}

/* ---- virtio-net (mode "net"): frames exchanged with a peer on the host's TAP ---- */

/*
 * The host test watches the TAP with a packet socket (PACKET_VNET_HDR) and expects, in order:
 * a plain broadcast frame (ethertype 0x88b5), a UDP/IPv4 frame with a partial checksum
 * (NEEDS_CSUM), a 4054-byte TCP/IPv4 frame with GSO (gso_size 1000), garbage chains that must
 * be dropped, and a second plain frame. It then sends a 1514-byte plain frame and a 6054-byte
 * TCP GSO frame, which must arrive here whole (the guest accepted GUEST_TSO4, which the VMM
 * mirrors onto the TAP) and spread over several mergeable buffers.
 */

#define NET_RXBUFS 8
#define NET_RXBUF_LEN 2048
#define NET_HDR_LEN 12
#define ETHERTYPE_TEST 0x88b5

struct vq {
    struct vq_desc desc[QSIZE] __attribute__((aligned(16)));
    struct vq_avail avail __attribute__((aligned(2)));
    struct vq_used used __attribute__((aligned(4)));
    u16 avail_idx, used_seen, notify_off;
};

struct ndev {
    u8 slot;
    u64 common, notify, devcfg;
    u32 notify_mult;
    u64 features;
    struct vq q[2];
    u8 rxbuf[NET_RXBUFS][NET_RXBUF_LEN];
    u8 frame[16384];
    u8 tx[8192];
};
static struct ndev ndevs[1] __attribute__((aligned(4096)));

static int net_init(struct ndev *d) {
    d->slot = net_slot;
    u64 bar = (conf_read(d->slot, 0x10) & ~0xfULL) | ((u64)conf_read(d->slot, 0x14) << 32);
    for (u8 cap = conf_read(d->slot, 0x34) & 0xff; cap;) {
        u32 w0 = conf_read(d->slot, cap);
        if ((w0 & 0xff) == 0x09) {
            u8 type = (w0 >> 24) & 0xff;
            u64 addr = bar + conf_read(d->slot, cap + 8);
            if (type == 1) d->common = addr;
            else if (type == 2) { d->notify = addr; d->notify_mult = conf_read(d->slot, cap + 16); }
            else if (type == 4) d->devcfg = addr;
        }
        cap = (w0 >> 8) & 0xff;
    }
    if (!d->common || !d->notify || !d->devcfg) { fail("net: virtio capabilities"); return 0; }
    u64 c = d->common;
    wr8(c + 0x14, 0);
    wr8(c + 0x14, 1 | 2);
    wr32(c + 0x00, 0);
    u64 f = rd32(c + 0x04);
    wr32(c + 0x00, 1);
    f |= (u64)rd32(c + 0x04) << 32;
    /* VERSION_1, CSUM, GUEST_CSUM, MTU, MAC, GUEST_TSO4, HOST_TSO4, MRG_RXBUF, STATUS. */
    u64 want = f & ((1ULL << 32) | (1 << 0) | (1 << 1) | (1 << 3) | (1 << 5) | (1 << 7) | (1 << 11) |
                    (1 << 15) | (1 << 16));
    d->features = want;
    wr32(c + 0x08, 0);
    wr32(c + 0x0c, (u32)want);
    wr32(c + 0x08, 1);
    wr32(c + 0x0c, (u32)(want >> 32));
    wr8(c + 0x14, 1 | 2 | 8);
    if (!(rd8(c + 0x14) & 8)) { fail("net: FEATURES_OK refused"); return 0; }
    for (int i = 0; i < 2; i++) {
        struct vq *q = &d->q[i];
        wr16(c + 0x16, (u16)i);
        CHECK(rd16(c + 0x18) >= QSIZE, "net: queue size");
        wr16(c + 0x18, QSIZE);
        wr64(c + 0x20, (u64)q->desc);
        wr64(c + 0x28, (u64)&q->avail);
        wr64(c + 0x30, (u64)&q->used);
        wr16(c + 0x1a, 0xffff); /* no MSI-X: this mode polls */
        q->notify_off = rd16(c + 0x1e);
        wr16(c + 0x1c, 1);
    }
    wr8(c + 0x14, 1 | 2 | 4 | 8);
    CHECK(rd8(c + 0x14) == 0xf, "net: DRIVER_OK");
    return 1;
}

static void net_kick(struct ndev *d, int qi) {
    wr16(d->notify + (u64)d->q[qi].notify_off * d->notify_mult, (u16)qi);
}

static void net_publish(struct ndev *d, int qi, u16 head) {
    struct vq *q = &d->q[qi];
    q->avail.ring[q->avail_idx % QSIZE] = head;
    barrier();
    q->avail_idx++;
    q->avail.idx = q->avail_idx;
    barrier();
}

/* Waits for the next used entry of queue qi. */
static int net_used(struct ndev *d, int qi, u32 *id, u32 *len) {
    struct vq *q = &d->q[qi];
    for (u64 spins = 0; *(volatile u16 *)&q->used.idx == q->used_seen; spins++) {
        cpu_relax();
        if (spins > 400000000ULL) return 0;
    }
    barrier();
    struct vq_used_elem *e = &q->used.ring[q->used_seen % QSIZE];
    *id = e->id;
    *len = e->len;
    q->used_seen++;
    return 1;
}

/* Sends one chain: header descriptor, then the frame; returns once the device is done. */
static int net_send(struct ndev *d, const u8 *hdr, const u8 *frame, u32 len) {
    struct vq *q = &d->q[1];
    memcpy(d->tx, hdr, NET_HDR_LEN);
    memcpy(d->tx + NET_HDR_LEN, frame, len);
    q->desc[0] = (struct vq_desc){ (u64)d->tx, NET_HDR_LEN, VIRTQ_DESC_F_NEXT, 1 };
    q->desc[1] = (struct vq_desc){ (u64)d->tx + NET_HDR_LEN, len, 0, 0 };
    net_publish(d, 1, 0);
    net_kick(d, 1);
    u32 id, used_len;
    return net_used(d, 1, &id, &used_len) && id == 0;
}

static u16 ip_checksum(const u8 *p, u32 len) {
    u32 s = 0;
    for (u32 i = 0; i + 1 < len; i += 2) s += ((u32)p[i] << 8) | p[i + 1];
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (u16)~s;
}

/* Ethernet + IPv4 (10.0.0.2 -> 10.0.0.1) headers for a payload of l4_len bytes; returns 34. */
static u32 put_eth_ip(u8 *f, const u8 *src_mac, u8 proto, u32 l4_len) {
    static const u8 dst[6] = { 0x02, 0, 0, 0, 0, 1 };
    memcpy(f, dst, 6);
    memcpy(f + 6, src_mac, 6);
    f[12] = 0x08; f[13] = 0x00;
    u8 *ip = f + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    u16 total = (u16)(20 + l4_len);
    ip[2] = (u8)(total >> 8); ip[3] = (u8)total;
    ip[6] = 0x40; /* DF */
    ip[8] = 64;
    ip[9] = proto;
    ip[12] = 10; ip[15] = 2;
    ip[16] = 10; ip[19] = 1;
    u16 cs = ip_checksum(ip, 20);
    ip[10] = (u8)(cs >> 8); ip[11] = (u8)cs;
    return 34;
}

/* The folded (not complemented) pseudo-header sum a partial checksum starts from. */
static u16 pseudo_sum(u8 proto, u32 l4_len) {
    u32 s = 0x0a00 + 0x0002 + 0x0a00 + 0x0001 + proto + l4_len;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (u16)s;
}

/* Receives one frame (all its mergeable buffers) into d->frame; returns its length with the
 * header, 0 on timeout. The buffers go straight back to the device. */
static u32 net_recv(struct ndev *d, u16 *num_buffers) {
    u32 id, len, total = 0;
    if (!net_used(d, 0, &id, &len) || id >= NET_RXBUFS || len < NET_HDR_LEN) return 0;
    u16 n = (u16)(d->rxbuf[id][10] | (d->rxbuf[id][11] << 8));
    *num_buffers = n;
    for (u16 i = 0;; i++) {
        if (total + len <= sizeof(d->frame)) memcpy(d->frame + total, d->rxbuf[id], len);
        total += len;
        net_publish(d, 0, (u16)id);
        if (i + 1 >= n) break;
        if (!net_used(d, 0, &id, &len) || id >= NET_RXBUFS) return 0;
    }
    net_kick(d, 0);
    return total;
}

static void test_net(void) {
    struct ndev *d = &ndevs[0];
    if (!nnets) { fail("net: no virtio-net device"); return; }
    if (!net_init(d)) return;
    u8 mac[6];
    for (int i = 0; i < 6; i++) mac[i] = rd8(d->devcfg + i);
    u16 status = rd16(d->devcfg + 6), mtu = rd16(d->devcfg + 10);
    puts("guest: net mac=");
    for (int i = 0; i < 6; i++) {
        putc("0123456789abcdef"[mac[i] >> 4]);
        putc("0123456789abcdef"[mac[i] & 15]);
        if (i < 5) putc(':');
    }
    puts(" mtu=");
    put_dec(mtu);
    puts(" status=");
    put_dec(status);
    puts(" features=");
    put_hex(d->features);
    putc('\n');
    CHECK(status & 1, "net: link up");
    CHECK((d->features & 0x8083) == 0x8083, "net: CSUM, GUEST_CSUM, GUEST_TSO4, MRG_RXBUF offered");
    CHECK(d->features & (1 << 11), "net: HOST_TSO4 offered");
    if (option("nobufs")) {
        /* The device is live but has nowhere to put frames: the VMM must wait, not spin. */
        puts("guest: net without receive buffers\n");
        for (;;) __asm__ volatile("cli; hlt");
    }

    for (u16 i = 0; i < NET_RXBUFS; i++) {
        d->q[0].desc[i] = (struct vq_desc){ (u64)d->rxbuf[i], NET_RXBUF_LEN, VIRTQ_DESC_F_WRITE, 0 };
        net_publish(d, 0, i);
    }
    net_kick(d, 0);
    if (option("rxidle")) {
        /* Buffers posted, nothing sent: the VMM is now reading the TAP. */
        puts("guest: net idle with receive buffers\n");
        for (;;) __asm__ volatile("cli; hlt");
    }

    static u8 hdr[NET_HDR_LEN];
    static u8 f[8192];
    /* 1: a plain frame. */
    memset(hdr, 0, sizeof(hdr));
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = ETHERTYPE_TEST >> 8; f[13] = ETHERTYPE_TEST & 0xff;
    const char *msg = "vmm-net-test plain 1";
    memset(f + 14, 0, 46);
    memcpy(f + 14, msg, strlen(msg));
    CHECK(net_send(d, hdr, f, 60), "net: plain frame sent");
    /* 2: UDP with a partial checksum (csum_start 34, csum_offset 6). */
    u32 udp_len = 8 + 100;
    u32 off = put_eth_ip(f, mac, 17, udp_len);
    u8 *udp = f + off;
    udp[0] = 0x1e; udp[1] = 0x61; udp[2] = 0x1e; udp[3] = 0x61; /* ports 7777 */
    udp[4] = (u8)(udp_len >> 8); udp[5] = (u8)udp_len;
    for (u32 i = 8; i < udp_len; i++) udp[i] = (u8)i;
    u16 ps = pseudo_sum(17, udp_len);
    udp[6] = (u8)(ps >> 8); udp[7] = (u8)ps;
    memset(hdr, 0, sizeof(hdr));
    hdr[0] = 1;
    hdr[6] = 34; hdr[8] = 6;
    CHECK(net_send(d, hdr, f, off + udp_len), "net: partial-checksum frame sent");
    /* 3: a 4000-byte TCP segment for the host to cut into 1000-byte ones (GSO). */
    u32 tcp_len = 20 + 4000;
    off = put_eth_ip(f, mac, 6, tcp_len);
    u8 *tcp = f + off;
    memset(tcp, 0, 20);
    tcp[0] = 0x1e; tcp[1] = 0x61; tcp[2] = 0x1e; tcp[3] = 0x62;
    tcp[7] = 1;        /* seq 1 */
    tcp[12] = 5 << 4;  /* data offset */
    tcp[13] = 0x18;    /* PSH ACK */
    tcp[14] = 0xff; tcp[15] = 0xff;
    for (u32 i = 20; i < tcp_len; i++) tcp[i] = (u8)(i * 3);
    ps = pseudo_sum(6, tcp_len);
    tcp[16] = (u8)(ps >> 8); tcp[17] = (u8)ps;
    memset(hdr, 0, sizeof(hdr));
    hdr[0] = 1;           /* NEEDS_CSUM */
    hdr[1] = 1;           /* GSO_TCPV4 */
    hdr[2] = 54;          /* hdr_len */
    hdr[4] = 1000 & 0xff; hdr[5] = 1000 >> 8; /* gso_size */
    hdr[6] = 34; hdr[8] = 16;
    CHECK(net_send(d, hdr, f, off + tcp_len), "net: GSO frame sent");
    /* 4: garbage the device must drop, each chain still returned. */
    u32 id, len;
    struct vq *tq = &d->q[1];
    tq->desc[0] = (struct vq_desc){ (u64)d->tx, 72, VIRTQ_DESC_F_WRITE, 0 };
    net_publish(d, 1, 0);
    tq->desc[1] = (struct vq_desc){ 0x7f000000ULL, 72, 0, 0 };
    net_publish(d, 1, 1);
    tq->desc[2] = (struct vq_desc){ (u64)d->tx, 8, 0, 0 };
    net_publish(d, 1, 2);
    tq->desc[3] = (struct vq_desc){ (u64)d->tx, 72, VIRTQ_DESC_F_NEXT, 3 };
    net_publish(d, 1, 3);
    net_kick(d, 1);
    for (int i = 0; i < 4; i++) CHECK(net_used(d, 1, &id, &len), "net: garbage chain returned");
    /* 5: the device still transmits. */
    memset(hdr, 0, sizeof(hdr));
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = ETHERTYPE_TEST >> 8; f[13] = ETHERTYPE_TEST & 0xff;
    memset(f + 14, 0, 46);
    msg = "vmm-net-test plain 2";
    memcpy(f + 14, msg, strlen(msg));
    CHECK(net_send(d, hdr, f, 60), "net: plain frame after garbage sent");
    puts("guest: net sent\n");
    puts("guest: net ready for rx\n");

    int got_plain = 0, got_tcp = 0;
    for (int frames = 0; frames < 64 && !(got_plain && got_tcp); frames++) {
        u16 nb = 0;
        u32 n = net_recv(d, &nb);
        if (!n) { fail("net: nothing received"); break; }
        u8 *e = d->frame + NET_HDR_LEN;
        u32 flen = n - NET_HDR_LEN;
        u16 type = (u16)((e[12] << 8) | e[13]);
        if (type == ETHERTYPE_TEST && flen == 1514) {
            int ok = 1;
            for (u32 i = 14; i < flen; i++) if (e[i] != (u8)(i * 7)) ok = 0;
            CHECK(ok, "net: plain frame content");
            puts("guest: net rx plain len=");
            put_dec(flen);
            puts(ok ? " ok\n" : " BAD\n");
            got_plain = 1;
        } else if (type == 0x0800 && e[23] == 6 && e[36] == 0x1e && e[37] == 0x63) {
            int ok = 1;
            for (u32 i = 54; i < flen; i++) if (e[i] != (u8)(i * 5)) ok = 0;
            CHECK(ok, "net: TCP payload");
            puts("guest: net rx tcp len=");
            put_dec(flen);
            puts(" flags=");
            put_dec(d->frame[0]);
            puts(" gso_type=");
            put_dec(d->frame[1]);
            puts(" gso_size=");
            put_dec((u16)(d->frame[4] | (d->frame[5] << 8)));
            puts(" num_buffers=");
            put_dec(nb);
            puts(ok ? " ok\n" : " BAD\n");
            got_tcp = 1;
        }
    }
    CHECK(got_plain && got_tcp, "net: both host frames received");
}

/* ---- serial input ---- */

static void test_input(void) {
    puts("guest: ready for input\n");
    char line[32];
    int n = 0;
    u64 spins = 0;
    while (n < (int)sizeof(line) - 1) {
        if (inb(COM1 + 5) & 1) {
            char c = (char)inb(COM1);
            if (c == '\n' || c == '\r') break;
            line[n++] = c;
            continue;
        }
        /* Each LSR read is a VM exit, so this is seconds, not spins. */
        if (++spins > 3000000) { fail("no serial input"); return; }
    }
    line[n] = 0;
    puts("guest: got input '");
    puts(line);
    puts("'\n");
}

/* ---- modes ---- */

static void power_off(struct hvm_start_info *si) {
    struct acpi_info ai;
    check_acpi(si, &ai);
    if (!ai.sleep_port || !ai.s5_type) { fail("no ACPI sleep control or _S5"); guest_exit(1); }
    puts("guest: powering off\n");
    outb(ai.sleep_port, (u8)((ai.s5_type << 2) | 0x20));
    fail("still running after power-off");
    guest_exit(1);
}

/* ---- issue 5: kvmclock, fw_cfg, the ACPI power button, a 9P2000.L client, benchmarks ---- */

static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }
static inline void wrmsr(u32 msr, u64 v) { __asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32))); }
static inline void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d) { __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0)); }
static inline void outl_be(u16 port, u32 v) { outl(port, __builtin_bswap32(v)); }
static inline void insb(u16 port, void *dst, u32 n) { __asm__ volatile("rep insb" : "+D"(dst), "+c"(n) : "d"(port) : "memory"); }

/* kvmclock: nanoseconds from KVM's paravirtual clock (MSR_KVM_SYSTEM_TIME_NEW). */
struct pvclock { u32 version, pad0; u64 tsc_timestamp, system_time; u32 mul; signed char shift; u8 flags, pad[2]; } __attribute__((packed));
static volatile struct pvclock pvclock __attribute__((aligned(64)));
static int clock_ok;

static void clock_init(void) {
    u32 a, b, c, d;
    cpuid(0x40000000, &a, &b, &c, &d);
    if (b != 0x4b4d564b || c != 0x564b4d56 || d != 0x4d) { fail("no KVM CPUID signature for kvmclock"); return; }
    cpuid(0x40000001, &a, &b, &c, &d);
    if (!(a & (1u << 3))) { fail("no KVM_FEATURE_CLOCKSOURCE2"); return; }
    wrmsr(0x4b564d01, (u64)&pvclock | 1);
    clock_ok = 1;
}

static u64 now_ns(void) {
    u32 v;
    u64 ns;
    do {
        v = pvclock.version;
        barrier();
        u64 delta = rdtsc() - pvclock.tsc_timestamp;
        if (pvclock.shift < 0) delta >>= -pvclock.shift; else delta <<= pvclock.shift;
        ns = pvclock.system_time + (u64)(((unsigned __int128)delta * pvclock.mul) >> 32);
        barrier();
    } while ((v & 1) || v != pvclock.version);
    return ns;
}

static void put_rate(const char *what, u64 bytes, u64 ns) {
    puts("guest: bench ");
    puts(what);
    puts(" bytes=");
    put_dec(bytes);
    puts(" ns=");
    put_dec(ns);
    puts(" MiB/s=");
    put_dec(ns ? bytes * 1000000000ULL / ns / 1048576 : 0);
    putc('\n');
}

/* ---- fw_cfg ---- */

#define FW_CFG_SEL 0x510
#define FW_CFG_DATA 0x511
#define FW_CFG_DMA 0x514

static void fw_cfg_select(u16 sel) { outw(FW_CFG_SEL, sel); }
static void fw_cfg_read(void *dst, u32 n) { u8 *p = dst; for (u32 i = 0; i < n; i++) p[i] = inb(FW_CFG_DATA); }

struct fw_cfg_dma { u32 control, length; u64 address; } __attribute__((packed));
static volatile struct fw_cfg_dma fw_dma __attribute__((aligned(16)));

/* Returns the control word the device left (0 on success). */
static u32 fw_cfg_dma(u32 control, void *dst, u32 len) {
    fw_dma.control = __builtin_bswap32(control);
    fw_dma.length = __builtin_bswap32(len);
    fw_dma.address = __builtin_bswap64((u64)dst);
    barrier();
    u64 a = (u64)&fw_dma;
    outl_be(FW_CFG_DMA, (u32)(a >> 32));
    outl_be(FW_CFG_DMA + 4, (u32)a);
    barrier();
    return __builtin_bswap32(fw_dma.control);
}

static u8 fw_buf[3][65536];

static void test_fw_cfg(void) {
    char sig[5] = {0};
    fw_cfg_select(0);
    fw_cfg_read(sig, 4);
    CHECK(memcmp(sig, "QEMU", 4) == 0, "fw_cfg signature");
    u32 id = 0;
    fw_cfg_select(1);
    fw_cfg_read(&id, 4);
    CHECK(id & 2, "fw_cfg offers DMA");
    u32 dma_sig_hi = __builtin_bswap32(inl(FW_CFG_DMA)), dma_sig_lo = __builtin_bswap32(inl(FW_CFG_DMA + 4));
    CHECK(dma_sig_hi == 0x51454d55 && dma_sig_lo == 0x20434647, "fw_cfg DMA signature QEMU CFG");
    puts("guest: fw_cfg signature QEMU id=");
    put_dec(id);
    putc('\n');
    fw_cfg_select(0x19);
    u32 count;
    fw_cfg_read(&count, 4);
    count = __builtin_bswap32(count);
    int found = 0;
    for (u32 i = 0; i < count && i < 64; i++) {
        struct { u32 size; u16 select, reserved; char name[56]; } e;
        fw_cfg_read(&e, sizeof(e));
        u32 size = __builtin_bswap32(e.size);
        u16 sel = __builtin_bswap16(e.select);
        e.name[55] = 0;
        puts("guest: fw_cfg file ");
        puts(e.name);
        puts(" size=");
        put_dec(size);
        putc('\n');
        int ign = strlen(e.name) && (memcmp(e.name, "opt/org.flatcar-linux/config", 29) == 0 || memcmp(e.name, "opt/com.coreos/config", 22) == 0);
        if (!ign) continue;
        if (size >= sizeof(fw_buf[0])) { fail("fw_cfg file too large for the test"); continue; }
        found++;
        /* 1: byte by byte through the data port; 2: rep insb; 3: DMA (select + read). */
        u32 saved = 0;
        memset(fw_buf, 0, sizeof(fw_buf));
        fw_cfg_select(sel);
        fw_cfg_read(fw_buf[0], size);
        fw_cfg_select(sel);
        insb(FW_CFG_DATA, fw_buf[1], size);
        saved = fw_cfg_dma(((u32)sel << 16) | 0x08 | 0x02, fw_buf[2], size);
        CHECK(saved == 0, "fw_cfg DMA read succeeded");
        CHECK(memcmp(fw_buf[0], fw_buf[1], size) == 0, "fw_cfg rep insb matches the data port");
        CHECK(memcmp(fw_buf[0], fw_buf[2], size) == 0, "fw_cfg DMA matches the data port");
        /* Reading the directory again mid-file must not disturb anything; and continue the
         * listing where we were. */
        puts("guest: fw_cfg ");
        puts(e.name);
        puts(" data=");
        puts((const char *)fw_buf[0]);
        putc('\n');
        fw_cfg_select(0x19);
        u8 skip[4 + 64 * 64];
        fw_cfg_read(skip, 4 + (i + 1) * 64);
    }
    CHECK(found == 2 || option("fwcfg_empty"), "both Ignition files in the fw_cfg directory");
    /* DMA into memory that does not exist: the device says ERROR, nothing crashes. */
    u32 st = fw_cfg_dma((0x20u << 16) | 0x08 | 0x02, (void *)0x7f000000000ULL, 16);
    CHECK(st & 1, "fw_cfg DMA outside guest memory gets the error bit");
    puts("guest: fw_cfg done\n");
}

/* ---- the ACPI power button (GED) ---- */

#define BUTTON_VECTOR 0x42
#define IOAPIC 0xfec00000ULL
static volatile u32 button_irqs;
void button_handler(void) { button_irqs++; wr32(LAPIC + 0xb0, 0); }
extern void isr_button(void);

static void ioapic_write(u32 reg, u32 v) { wr32(IOAPIC, reg); wr32(IOAPIC + 0x10, v); }

/* The GED's event register port, from its OperationRegion (GDST, SystemIO, port, len). */
static u16 ged_port(struct hvm_start_info *si) {
    struct acpi_info ai;
    check_acpi(si, &ai);
    u64 rsdp = si->rsdp_paddr, xsdt = *(volatile u64 *)(rsdp + 24);
    for (u32 off = 36; off + 8 <= rd32(xsdt + 4); off += 8) {
        u64 t = *(volatile u64 *)(xsdt + off);
        if (rd32(t) != 0x50434146) continue;
        u64 dsdt = *(volatile u64 *)(t + 140);
        u32 len = rd32(dsdt + 4);
        for (u32 i = 36; i + 10 < len; i++)
            if (rd8(dsdt + i) == 0x5b && rd8(dsdt + i + 1) == 0x80 && rd32(dsdt + i + 2) == 0x54534447 /* GDST */
                && rd8(dsdt + i + 6) == 1 && rd8(dsdt + i + 7) == 0x0b)
                return rd16(dsdt + i + 8);
    }
    return 0;
}

static void wait_for_power_button(struct hvm_start_info *si) {
    u16 port = ged_port(si);
    if (!port) { fail("no GED OperationRegion in the DSDT"); guest_exit(1); }
    setup_interrupts();
    set_gate(BUTTON_VECTOR, (u64)isr_button);
    /* GSI 5 (the GED's _CRS): edge, active high, fixed delivery to LAPIC 0. */
    ioapic_write(0x10 + 2 * 5 + 1, 0);
    ioapic_write(0x10 + 2 * 5, BUTTON_VECTOR);
    puts("guest: waiting for the power button on port ");
    put_hex(port);
    putc('\n');
    for (;;) {
        __asm__ volatile("sti; hlt; cli");
        if (!button_irqs) continue;
        u8 ev = inb(port);
        if (ev & 1) break;
    }
    CHECK(inb(port) == 0, "reading the GED register clears it");
    puts("guest: power button pressed\n");
    if (option("ignorebutton")) { for (;;) __asm__ volatile("cli; hlt"); }
    power_off(si);
}

/* ---- virtio-pci by slot (9p) ---- */

static int vdev_setup(struct vdev *d, u8 slot, u64 accept) {
    /* A second set-up (after a reset) starts the rings from scratch. */
    memset(&d->avail, 0, sizeof(d->avail));
    memset(&d->used, 0, sizeof(d->used));
    d->avail_idx = d->used_seen = 0;
    d->slot = slot;
    u64 bar = (conf_read(slot, 0x10) & ~0xfULL) | ((u64)conf_read(slot, 0x14) << 32);
    for (u8 cap = conf_read(slot, 0x34) & 0xff; cap;) {
        u32 w0 = conf_read(slot, cap);
        if ((w0 & 0xff) == 0x09) {
            u8 type = (w0 >> 24) & 0xff;
            u64 addr = bar + conf_read(slot, cap + 8);
            if (type == 1) d->common = addr;
            else if (type == 2) { d->notify = addr; d->notify_mult = conf_read(slot, cap + 16); }
            else if (type == 3) d->isr = addr;
            else if (type == 4) d->devcfg = addr;
        }
        cap = (w0 >> 8) & 0xff;
    }
    if (!d->common || !d->notify || !d->devcfg) { fail("virtio capabilities"); return 0; }
    u64 c = d->common;
    wr8(c + 0x14, 0);
    wr8(c + 0x14, 1 | 2);
    wr32(c + 0x00, 0);
    u64 f = rd32(c + 0x04);
    wr32(c + 0x00, 1);
    f |= (u64)rd32(c + 0x04) << 32;
    d->features = f;
    u64 want = f & accept;
    wr32(c + 0x08, 0);
    wr32(c + 0x0c, (u32)want);
    wr32(c + 0x08, 1);
    wr32(c + 0x0c, (u32)(want >> 32));
    wr8(c + 0x14, 1 | 2 | 8);
    if (!(rd8(c + 0x14) & 8)) { fail("FEATURES_OK refused"); return 0; }
    wr16(c + 0x16, 0);
    wr16(c + 0x18, QSIZE);
    wr64(c + 0x20, (u64)d->desc);
    wr64(c + 0x28, (u64)&d->avail);
    wr64(c + 0x30, (u64)&d->used);
    wr16(c + 0x1a, 0xffff); /* no interrupts: we poll */
    d->notify_off = rd16(c + 0x1e);
    wr16(c + 0x1c, 1);
    wr8(c + 0x14, 1 | 2 | 4 | 8);
    return rd8(c + 0x14) == 0xf;
}

/* ---- a minimal 9P2000.L client: version, attach, walk, lopen, read, clunk ---- */

static struct vdev p9dev __attribute__((aligned(4096)));
static u8 p9_req[512] __attribute__((aligned(64)));
#define P9_MSIZE (64 * 1024 + 24)
static u8 p9_resp[P9_MSIZE] __attribute__((aligned(4096)));
static u32 p9_len;

static void p9_begin(u8 type, u16 tag) { p9_len = 7; p9_req[4] = type; p9_req[5] = (u8)tag; p9_req[6] = (u8)(tag >> 8); }
static void p9_u8(u8 v) { p9_req[p9_len++] = v; }
static void p9_u16(u16 v) { p9_u8((u8)v); p9_u8((u8)(v >> 8)); }
static void p9_u32(u32 v) { p9_u16((u16)v); p9_u16((u16)(v >> 16)); }
static void p9_u64(u64 v) { p9_u32((u32)v); p9_u32((u32)(v >> 32)); }
static void p9_str(const char *s, u32 n) { p9_u16((u16)n); memcpy(p9_req + p9_len, s, n); p9_len += n; }

/* Sends the request, waits for the reply; returns its type (0 on a transport failure). */
static u8 p9_rpc(void) {
    struct vdev *d = &p9dev;
    memcpy(p9_req, &p9_len, 4);
    d->desc[0] = (struct vq_desc){ (u64)p9_req, p9_len, VIRTQ_DESC_F_NEXT, 1 };
    d->desc[1] = (struct vq_desc){ (u64)p9_resp, P9_MSIZE, VIRTQ_DESC_F_WRITE, 0 };
    submit(d, 0);
    u32 len = 0;
    if (!wait_used(d, 0, &len) || len < 7) return 0;
    return p9_resp[4];
}
static u32 p9_resp_u32(u32 at) { u32 v; memcpy(&v, p9_resp + at, 4); return v; }

static u8 p9_walk(u32 fid, u32 newfid, const char *path) {
    p9_begin(110, 3);
    p9_u32(fid);
    p9_u32(newfid);
    u32 at = p9_len;
    p9_u16(0);
    u16 n = 0;
    const char *s = path;
    while (*s) {
        const char *e = s;
        while (*e && *e != '/') e++;
        if (e > s) { p9_str(s, (u32)(e - s)); n++; }
        s = *e ? e + 1 : e;
    }
    p9_req[at] = (u8)n;
    p9_req[at + 1] = (u8)(n >> 8);
    return p9_rpc();
}

static int p9_find(void) {
    for (u8 dev = 0; dev < 32; dev++)
        if (conf_read(dev, 0) == 0x10491af4) return vdev_setup(&p9dev, dev, 1ULL << 32 | 1);
    fail("no virtio-9p device");
    return 0;
}

/* Mounts the first share and opens `path` as fid 1. Returns the negotiated msize. */
static u32 p9_open(const char *path) {
    if (!p9_find()) return 0;
    u16 taglen = rd16(p9dev.devcfg);
    char tag[65] = {0};
    for (u16 i = 0; i < taglen && i < 64; i++) tag[i] = (char)rd8(p9dev.devcfg + 2 + i);
    puts("guest: 9p tag ");
    puts(tag);
    putc('\n');
    p9_begin(100, 0xffff);
    p9_u32(P9_MSIZE);
    p9_str("9P2000.L", 8);
    if (p9_rpc() != 101) { fail("9p Tversion"); return 0; }
    u32 msize = p9_resp_u32(7);
    p9_begin(104, 1);
    p9_u32(0);
    p9_u32(~0u);
    p9_str("", 0);
    p9_str("", 0);
    p9_u32(0);
    if (p9_rpc() != 105) { fail("9p Tattach"); return 0; }
    if (p9_walk(0, 1, path) != 111) { fail("9p Twalk to the file"); return 0; }
    p9_begin(12, 4);
    p9_u32(1);
    p9_u32(0);
    if (p9_rpc() != 13) { fail("9p Tlopen"); return 0; }
    return msize;
}

/* Reads fid 1 to its end in msize-sized requests; checks the disk pattern; returns bytes. */
static u64 p9_read_all(u32 msize, u64 *ns) {
    u64 off = 0, t = 0;
    u32 chunk = msize - 11;
    for (;;) {
        p9_begin(116, 5);
        p9_u32(1);
        p9_u64(off);
        p9_u32(chunk);
        u64 t0 = now_ns();
        u8 ty = p9_rpc();
        t += now_ns() - t0;
        if (ty != 117) { fail("9p Tread"); break; }
        u32 n = p9_resp_u32(7);
        if (n == 0) break;
        /* Byte i of the file is the disk pattern: sector i/512, offset i%512. */
        u64 i = off;
        if (p9_resp[11] != (u8)((i / 512) * 3 + i % 512)) { fail("9p data does not match the pattern"); break; }
        off += n;
    }
    *ns = t;
    return off;
}

static void test_p9(const char *path) {
    u32 msize = p9_open(path);
    if (!msize) return;
    u64 ns;
    u64 bytes = p9_read_all(msize, &ns);
    puts("guest: 9p read ");
    put_dec(bytes);
    puts(" bytes of ");
    puts(path);
    putc('\n');
    /* Escapes and writes on a read-only share: each gets Rlerror (type 7) with its errno. */
    CHECK(p9_walk(0, 2, "..") == 7 && p9_resp_u32(7) == 1 /* EPERM */, "9p walk to .. refused with EPERM");
    CHECK(p9_walk(0, 2, "../etc") == 7, "9p walk with a slash refused");
    if (option("p9ro")) {
        p9_begin(72, 6); /* Tmkdir */
        p9_u32(0);
        p9_str("newdir", 6);
        p9_u32(0755);
        p9_u32(0);
        CHECK(p9_rpc() == 7 && p9_resp_u32(7) == 30 /* EROFS */, "9p mkdir on a read-only share gets EROFS");
    }
    /* A malformed frame: size field lies. */
    p9_begin(120, 9);
    p9_u32(1);
    u32 lie = 0xffff;
    memcpy(p9_req, &lie, 4);
    struct vdev *d = &p9dev;
    d->desc[0] = (struct vq_desc){ (u64)p9_req, p9_len, VIRTQ_DESC_F_NEXT, 1 };
    d->desc[1] = (struct vq_desc){ (u64)p9_resp, P9_MSIZE, VIRTQ_DESC_F_WRITE, 0 };
    submit(d, 0);
    u32 len = 0;
    CHECK(wait_used(d, 0, &len) && p9_resp[4] == 7 && p9_resp[5] == 9, "9p malformed frame gets Rlerror with its tag");
    puts("guest: 9p done\n");
}

/* ---- benchmarks: sequential reads, timed with kvmclock ---- */

static u8 blk_bench_buf[256 * 1024] __attribute__((aligned(4096)));

static void bench_blk(void) {
    if (!ndisks) { fail("no disk to benchmark"); return; }
    struct vdev *d = &vdevs[0];
    if (!virtio_init(d, 0)) return;
    u64 cap = disk_capacity(d), t = 0, s = 0;
    u32 per = sizeof(blk_bench_buf) / 512;
    while (s < cap) {
        u32 n = cap - s < per ? (u32)(cap - s) : per;
        u64 t0 = now_ns();
        u8 st = blk_request(d, 0, s, blk_bench_buf, n * 512, 1, 0);
        t += now_ns() - t0;
        if (st != 0 || !pattern_ok(blk_bench_buf, s, 1)) { fail("bench read"); return; }
        s += n;
    }
    put_rate("virtio-blk", cap * 512, t);
}

static void bench_p9(const char *path) {
    u32 msize = p9_open(path);
    if (!msize) return;
    u64 ns;
    u64 bytes = p9_read_all(msize, &ns);
    put_rate("virtio-9p", bytes, ns);
}

static void issue5_modes(struct hvm_start_info *si) {
    const char *p;
    /* "echo": one line of serial input echoed back first (an attached console's test). */
    if (option("echo")) test_input();
    if (option("button")) wait_for_power_button(si);
    if (option("fwcfg")) {
        test_fw_cfg();
        puts(failures ? "guest: FAILED\n" : "guest: PASS\n");
        guest_exit(failures ? 1 : 0);
    }
    if ((p = option("p9read")) || option("blkbench") || option("p9bench")) {
        clock_init();
        setup_interrupts();
        struct acpi_info ai;
        check_acpi(si, &ai);
        scan_pci(ai.ecam);
        static char path[128];
        if (p) {
            usize n = 0;
            while (p[n] && p[n] != ' ' && n < sizeof(path) - 1) { path[n] = p[n]; n++; }
            path[n] = 0;
            test_p9(path);
        }
        if (option("blkbench")) bench_blk();
        if ((p = option("p9bench"))) {
            usize n = 0;
            while (p[n] && p[n] != ' ' && n < sizeof(path) - 1) { path[n] = p[n]; n++; }
            path[n] = 0;
            bench_p9(path);
        }
        puts(failures ? "guest: FAILED\n" : "guest: PASS\n");
        guest_exit(failures ? 1 : 0);
    }
}

/* ---- issue 7: faults (blkstream, blkfull) and a malicious driver (attack) ---- */

/* Block n of a stream (4 KiB, 8 sectors): u64 word k is (n << 32) | (k << 16) | 0xb10c. The
 * host test builds the same bytes to compare with the image. */
static void fill_block(u8 *b, u64 n) {
    for (u64 k = 0; k < 512; k++) {
        u64 w = (n << 32) | (k << 16) | 0xb10c;
        memcpy(b + k * 8, &w, 8);
    }
}

static void delay_us(u64 us) {
    u64 end = now_ns() + us * 1000;
    while (now_ns() < end) cpu_relax();
}

/* blkstream: numbered blocks to the first disk, a FLUSH every 8 blocks; after each
 * successful flush "guest: flushed N" says blocks 0..N-1 are durable. pace_us=N between
 * blocks so the host can kill the VMM mid-stream. */
static void blk_stream(void) {
    if (!ndisks) { fail("blkstream: no disk"); return; }
    struct vdev *d = &vdevs[0];
    if (!virtio_init(d, 0)) return;
    u64 blocks = disk_capacity(d) / 8, pace = option_num("pace_us", 1000);
    puts("guest: stream of ");
    put_dec(blocks);
    puts(" blocks\n");
    for (u64 n = 0; n < blocks; n++) {
        fill_block(d->buf, n);
        u8 st = blk_request(d, 1, n * 8, d->buf, 4096, 0, 0);
        if (st != 0) { fail("blkstream: write status"); return; }
        if ((n + 1) % 8 == 0) {
            st = blk_request(d, 4, 0, NULL, 0, 0, 0);
            if (st != 0) { fail("blkstream: flush status"); return; }
            puts("guest: flushed ");
            put_dec(n + 1);
            putc('\n');
        }
        delay_us(pace);
    }
    puts("guest: stream end\n");
}

/* blkfull: the first disk's image sits on a full filesystem. Write every block, report the
 * first failure's status and the totals, flush, then read back what was written. */
static void blk_full(void) {
    if (!ndisks) { fail("blkfull: no disk"); return; }
    struct vdev *d = &vdevs[0];
    if (!virtio_init(d, 0)) return;
    u64 blocks = disk_capacity(d) / 8, ok = 0, failed = 0, first_failed = 0;
    for (u64 n = 0; n < blocks; n++) {
        fill_block(d->buf, n);
        u8 st = blk_request(d, 1, n * 8, d->buf, 4096, 0, 0);
        if (st == 0) {
            CHECK(!failed, "blkfull: a write succeeded after one failed");
            ok++;
            continue;
        }
        if (!failed++) {
            first_failed = n;
            puts("guest: write of block ");
            put_dec(n);
            puts(" failed with status ");
            put_dec(st);
            putc('\n');
        }
    }
    puts("guest: writes ok=");
    put_dec(ok);
    puts(" failed=");
    put_dec(failed);
    putc('\n');
    puts("guest: flush status ");
    put_dec(blk_request(d, 4, 0, NULL, 0, 0, 0));
    putc('\n');
    int intact = ok > 0;
    for (u64 n = 0; n < ok; n += (ok > 64 ? ok / 64 : 1)) {
        u8 st = blk_request(d, 0, n * 8, d->buf, 4096, 1, 0);
        fill_block(d->buf2, n); /* first 512 bytes of the expected block */
        if (st != 0 || memcmp(d->buf, d->buf2, 512)) intact = 0;
    }
    if (ok) {
        u8 st = blk_request(d, 0, (ok - 1) * 8, d->buf, 4096, 1, 0);
        fill_block(d->buf2, ok - 1);
        if (st != 0 || memcmp(d->buf, d->buf2, 512)) intact = 0;
    }
    CHECK(intact, "blkfull: blocks written before the disk filled read back intact");
    if (intact) puts("guest: reads after the failed writes are intact\n");
    if (failed) {
        u8 st = blk_request(d, 0, first_failed * 8, d->buf, 4096, 1, 0);
        int zero = 1;
        for (int i = 0; i < 4096; i++) if (d->buf[i]) zero = 0;
        puts("guest: failed block reads status ");
        put_dec(st);
        puts(zero ? " zeroes\n" : " data\n");
    }
}

/* A driver that does everything wrong, one thing at a time, on queue 0 of a device. */
#define AQ_MAX 256
struct aring {
    struct vq_desc desc[AQ_MAX];
    u8 avail[4096];
    u8 used[4096];
};
static struct aring arings[3] __attribute__((aligned(4096)));
static struct vq_desc aind[8] __attribute__((aligned(16)));
static struct vq_desc aind2[4] __attribute__((aligned(16)));
static u8 a_req[64] __attribute__((aligned(64)));
static u8 a_data[4096] __attribute__((aligned(4096)));
static volatile u8 a_status;
static u64 ram_end;

enum { ABLK, ARNG, AP9 };
static const char *const akind_name[] = { "blk", "rng", "9p" };

struct adev {
    int kind;
    u8 slot;
    u64 common, notify, devcfg;
    u32 notify_mult;
    u16 notify_off, qsize, avail_idx, used_seen;
    struct aring *r;
    u8 skew_avail, skew_used; /* misaligned rings: bytes past the aligned ring memory */
};
static struct adev adevs[3];
static u64 a_avail(struct adev *d) { return (u64)d->r->avail + d->skew_avail; }
static u64 a_used(struct adev *d) { return (u64)d->r->used + d->skew_used; }

#define VIRTQ_DESC_F_INDIRECT 4
#define OUTSIDE_RAM 0x7f000000ULL

static int a_caps(struct adev *d, u8 slot) {
    d->slot = slot;
    u64 bar = (conf_read(slot, 0x10) & ~0xfULL) | ((u64)conf_read(slot, 0x14) << 32);
    for (u8 cap = conf_read(slot, 0x34) & 0xff; cap;) {
        u32 w0 = conf_read(slot, cap);
        if ((w0 & 0xff) == 0x09) {
            u8 type = (w0 >> 24) & 0xff;
            u64 addr = bar + conf_read(slot, cap + 8);
            if (type == 1) d->common = addr;
            else if (type == 2) { d->notify = addr; d->notify_mult = conf_read(slot, cap + 16); }
            else if (type == 4) d->devcfg = addr;
        }
        cap = (w0 >> 8) & 0xff;
    }
    return d->common && d->notify && d->devcfg;
}

static void a_reset(struct adev *d) {
    wr8(d->common + 0x14, 0);
    memset(d->r->avail, 0, sizeof(d->r->avail));
    memset(d->r->used, 0, sizeof(d->r->used));
    d->avail_idx = d->used_seen = 0;
    d->skew_avail = d->skew_used = 0;
}

/* Reset, acknowledge, negotiate VERSION_1 and INDIRECT_DESC (and FLUSH for disks). */
static int a_begin(struct adev *d) {
    u64 c = d->common;
    a_reset(d);
    wr8(c + 0x14, 1 | 2);
    wr32(c + 0x00, 0);
    u64 f = rd32(c + 0x04);
    wr32(c + 0x00, 1);
    f |= (u64)rd32(c + 0x04) << 32;
    u64 want = f & ((1ULL << 32) | (1ULL << 28) | (1 << 9));
    wr32(c + 0x08, 0);
    wr32(c + 0x0c, (u32)want);
    wr32(c + 0x08, 1);
    wr32(c + 0x0c, (u32)(want >> 32));
    wr16(c + 0x10, 0xffff);
    wr8(c + 0x14, 1 | 2 | 8);
    return (rd8(c + 0x14) & 8) != 0;
}

/* Queue 0: size (0 keeps the device's), ring addresses, enable. Returns the size read back. */
static u16 a_queue(struct adev *d, u16 size, u64 desc, u64 avail, u64 used, int enable) {
    u64 c = d->common;
    wr16(c + 0x16, 0);
    if (size) wr16(c + 0x18, size);
    d->qsize = rd16(c + 0x18);
    wr64(c + 0x20, desc);
    wr64(c + 0x28, avail);
    wr64(c + 0x30, used);
    wr16(c + 0x1a, 0xffff); /* we poll */
    d->notify_off = rd16(c + 0x1e);
    if (enable) wr16(c + 0x1c, 1);
    return d->qsize;
}

static u8 a_driver_ok(struct adev *d) {
    wr8(d->common + 0x14, 1 | 2 | 4 | 8);
    return rd8(d->common + 0x14);
}

static int a_setup(struct adev *d) {
    if (!a_begin(d)) return 0;
    a_queue(d, 16, (u64)d->r->desc, (u64)d->r->avail, (u64)d->r->used, 1);
    return a_driver_ok(d) == 0xf;
}

static void a_publish(struct adev *d, u16 head) {
    wr16(a_avail(d) + 4 + 2 * (u64)(d->avail_idx % d->qsize), head);
    barrier();
    d->avail_idx++;
    wr16(a_avail(d) + 2, d->avail_idx);
    barrier();
}

static void a_kick(struct adev *d) { wr16(d->notify + (u64)d->notify_off * d->notify_mult, 0); }

/* Waits up to ms for the next used entry; returns 0 if none came. */
static int a_wait(struct adev *d, u64 ms, u32 *len) {
    u64 end = now_ns() + ms * 1000000ULL;
    while (rd16(a_used(d) + 2) == d->used_seen) {
        if (now_ns() > end) return 0;
        cpu_relax();
    }
    barrier();
    *len = rd32(a_used(d) + 4 + 8 * (u64)(d->used_seen % d->qsize) + 4);
    d->used_seen++;
    return 1;
}

/* The device's ordinary request, as descriptors 0..n-1 of table t; returns n. */
static int a_good_chain(int kind, struct vq_desc *t) {
    a_status = 0xee;
    memset(a_data, 0, 512);
    if (kind == ABLK) {
        struct blk_req h = { 0, 0, 7 };
        memcpy(a_req, &h, sizeof(h));
        t[0] = (struct vq_desc){ (u64)a_req, 16, VIRTQ_DESC_F_NEXT, 1 };
        t[1] = (struct vq_desc){ (u64)a_data, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2 };
        t[2] = (struct vq_desc){ (u64)&a_status, 1, VIRTQ_DESC_F_WRITE, 0 };
        return 3;
    }
    if (kind == ARNG) {
        t[0] = (struct vq_desc){ (u64)a_data, 64, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1 };
        t[1] = (struct vq_desc){ (u64)a_data + 64, 64, VIRTQ_DESC_F_WRITE, 0 };
        return 2;
    }
    /* Tversion: size[4] type[1]=100 tag[2]=0xffff msize[4]=8192 version[s]="9P2000.L" */
    static const u8 tv[] = { 21, 0, 0, 0, 100, 0xff, 0xff, 0, 0x20, 0, 0, 8, 0, '9', 'P', '2', '0', '0', '0', '.', 'L' };
    memcpy(a_req, tv, sizeof(tv));
    t[0] = (struct vq_desc){ (u64)a_req, sizeof(tv), VIRTQ_DESC_F_NEXT, 1 };
    t[1] = (struct vq_desc){ (u64)a_data, 4096, VIRTQ_DESC_F_WRITE, 0 };
    return 2;
}

static int a_good_result(int kind, u32 len) {
    if (kind == ABLK) return len == 513 && a_status == 0 && pattern_ok(a_data, 7, 1);
    if (kind == ARNG) {
        int nonzero = 0;
        for (int i = 0; i < 128; i++) if (a_data[i]) nonzero = 1;
        return len == 128 && nonzero;
    }
    return len >= 7 && a_data[4] == 101;
}

/* One ordinary request, answered correctly within 2 s. */
static int a_serves(struct adev *d) {
    a_good_chain(d->kind, d->r->desc);
    a_publish(d, 0);
    a_kick(d);
    u32 len = 0;
    return a_wait(d, 2000, &len) && a_good_result(d->kind, len);
}

static void a_report(struct adev *d, const char *attack, const char *outcome, int ok, int serving) {
    puts("guest: attack ");
    puts(akind_name[d->kind]);
    putc(' ');
    puts(attack);
    puts(": ");
    puts(outcome);
    puts(serving ? ", device still serving" : ", DEVICE NOT SERVING");
    puts(ok ? "\n" : " (UNEXPECTED)\n");
    if (!ok) fail(attack);
    if (!serving) fail("device serves after the attack");
}

enum {
    M_LOOP, M_BADNEXT, M_OUTSIDE, M_WRAP, M_BIGLEN, M_4G,
    M_IND_OK, M_IND_NESTED, M_IND_OUTSIDE, M_IND_ODDLEN, M_IND_HUGE, M_IND_LOOP, M_IND_WRAP,
};
static const char *const mutation_name[] = {
    "descriptor loop", "next index beyond the queue", "buffer outside guest memory",
    "buffer address + length wraps", "length beyond guest memory", "chain longer than 4 GiB",
    "indirect table (well-formed)", "indirect table nested in an indirect table",
    "indirect table outside guest memory", "indirect table length not a multiple of 16",
    "indirect table of 4 GiB", "descriptor loop inside an indirect table",
    "indirect table address wraps",
};

/* A malformed chain: the device must complete it with an error (disks: IOERR when there is a
 * status byte to write, else length 0) and keep serving the queue. */
static void a_chain_attack(struct adev *d, int m) {
    struct vq_desc *t = d->r->desc;
    int n;
    if (m >= M_IND_OK) {
        n = a_good_chain(d->kind, aind);
        t[0] = (struct vq_desc){ (u64)aind, (u32)(n * 16), VIRTQ_DESC_F_INDIRECT, 0 };
        if (m == M_IND_NESTED) {
            aind2[0] = aind[0];
            aind[0] = (struct vq_desc){ (u64)aind2, 16, VIRTQ_DESC_F_INDIRECT, 0 };
        } else if (m == M_IND_OUTSIDE) t[0].addr = OUTSIDE_RAM;
        else if (m == M_IND_ODDLEN) t[0].len = 40;
        else if (m == M_IND_HUGE) t[0].len = 0xfffffff0u;
        else if (m == M_IND_LOOP) { aind[n - 1].flags |= VIRTQ_DESC_F_NEXT; aind[n - 1].next = 0; }
        else if (m == M_IND_WRAP) t[0].addr = 0xfffffffffffffff0ULL;
    } else {
        n = a_good_chain(d->kind, t);
        if (m == M_LOOP) { t[n - 1].flags |= VIRTQ_DESC_F_NEXT; t[n - 1].next = 0; }
        else if (m == M_BADNEXT) { t[n - 1].flags |= VIRTQ_DESC_F_NEXT; t[n - 1].next = 999; }
        else if (m == M_OUTSIDE) t[0].addr = OUTSIDE_RAM;
        else if (m == M_WRAP) t[0].addr = 0xfffffffffffffff8ULL;
        else if (m == M_BIGLEN) t[0].len = 0x10000000u; /* 256 MiB: more than the guest has */
        else if (m == M_4G) { t[0].len = 0x80000000u; t[1].len = 0x80000000u; }
    }
    a_publish(d, 0);
    a_kick(d);
    u32 len = 0xdead;
    int done = a_wait(d, 2000, &len);
    const char *outcome;
    int ok;
    /* Disks report IOERR when the status byte is reachable and the chain itself is sound. */
    int ioerr = d->kind == ABLK && (m == M_OUTSIDE || m == M_WRAP || m == M_BIGLEN);
    if (m == M_IND_OK) {
        ok = done && a_good_result(d->kind, len);
        outcome = "served normally";
    } else if (ioerr) {
        ok = done && len == 1 && a_status == 1;
        outcome = "completed with status IOERR";
    } else {
        ok = done && len == 0 && a_status == 0xee;
        outcome = "completed with length 0, nothing written";
    }
    if (!done) outcome = "no completion";
    a_report(d, mutation_name[m], outcome, ok, a_serves(d));
}

/* Attacks on the ring and the transport. Each leaves the device reset and set up again. */
static void a_ring_attacks(struct adev *d) {
    u32 len;
    u16 max;
    u8 st;
    int ok;

    /* The avail index jumps far ahead of what was published, or back (wrapping to 0xffff). */
    for (int back = 0; back < 2; back++) {
        a_setup(d);
        a_good_chain(d->kind, d->r->desc);
        wr16((u64)d->r->avail + 2, back ? (u16)(d->avail_idx - 1) : (u16)(d->avail_idx + 1000));
        a_kick(d);
        ok = !a_wait(d, 300, &len);
        /* Published properly now: still nothing until the driver resets the device. */
        wr16((u64)d->r->avail + 4, 0);
        wr16((u64)d->r->avail + 2, 1);
        a_kick(d);
        ok = ok && !a_wait(d, 300, &len);
        a_setup(d);
        a_report(d, back ? "avail index moved backwards (wrapped)" : "avail index 1000 ahead",
                 "no completion, queue stopped until reset", ok, a_serves(d));
    }

    /* Rings at odd addresses (the spec wants 2 and 4 byte alignment). */
    for (int used = 0; used < 2; used++) {
        a_begin(d);
        if (used) d->skew_used = 1; else d->skew_avail = 1;
        a_queue(d, 16, (u64)d->r->desc, a_avail(d), a_used(d), 1);
        st = a_driver_ok(d);
        a_good_chain(d->kind, d->r->desc);
        a_publish(d, 0);
        a_kick(d);
        ok = (st == 0xf || st == 0x4f) && !a_wait(d, 300, &len);
        a_setup(d);
        a_report(d, used ? "used ring misaligned" : "avail ring misaligned",
                 "no completion, queue stopped until reset", ok, a_serves(d));
    }

    /* A queue size that is not a power of two, written and then enabled. */
    a_begin(d);
    max = a_queue(d, 100, (u64)d->r->desc, (u64)d->r->avail, (u64)d->r->used, 1);
    st = a_driver_ok(d);
    ok = max != 100 && (max & (max - 1)) == 0 && max <= AQ_MAX && st == 0xf;
    a_report(d, "queue size 100", "refused, size stays a power of two", ok, a_serves(d));

    /* Notifications on a queue never set up, and on queue indexes that do not exist. */
    a_reset(d);
    a_kick(d);
    wr16(d->notify + 5 * (u64)d->notify_mult, 5);
    wr16(d->notify + 0x800, 0x1234);
    wr16(d->notify + (u64)d->notify_off * d->notify_mult, 7);
    a_begin(d);
    wr16(d->common + 0x16, 7);
    wr16(d->common + 0x18, 16);
    wr16(d->common + 0x1c, 1);
    ok = rd16(d->common + 0x18) == 0 && rd16(d->common + 0x1c) == 0;
    a_queue(d, 16, (u64)d->r->desc, (u64)d->r->avail, (u64)d->r->used, 1);
    /* Published and kicked before DRIVER_OK: not served yet. */
    a_good_chain(d->kind, d->r->desc);
    a_publish(d, 0);
    a_kick(d);
    ok = ok && !a_wait(d, 300, &len);
    st = a_driver_ok(d);
    a_kick(d);
    ok = ok && st == 0xf && a_wait(d, 2000, &len) && a_good_result(d->kind, len);
    a_report(d, "notifications before set-up and to queues that do not exist",
             "ignored (served only after DRIVER_OK)", ok, a_serves(d));

    /* DRIVER_OK with rings the device cannot use: NEEDS_RESET, notifications ignored. */
    static const char *const bad_ring[] = {
        "DRIVER_OK with the queue not enabled", "used ring outside guest memory",
        "descriptor table outside guest memory", "avail ring across the end of guest memory",
    };
    for (int i = 0; i < 4; i++) {
        u64 desc = (u64)d->r->desc, avail = (u64)d->r->avail, used = (u64)d->r->used;
        if (i == 1) used = OUTSIDE_RAM;
        if (i == 2) desc = OUTSIDE_RAM;
        if (i == 3) avail = ram_end - 8;
        a_begin(d);
        a_queue(d, 16, desc, avail, used, i != 0);
        st = a_driver_ok(d);
        a_good_chain(d->kind, d->r->desc);
        if (i != 3) a_publish(d, 0);
        a_kick(d);
        ok = st == (0xf | 0x40) && !a_wait(d, 300, &len);
        a_setup(d);
        a_report(d, bad_ring[i], "DEVICE_NEEDS_RESET, nothing served", ok, a_serves(d));
    }
}

static void attack_device(struct adev *d) {
    if (!a_setup(d)) { fail("attack: device set-up"); return; }
    CHECK(a_serves(d), "attack: device serves before the attacks");
    for (int m = M_LOOP; m <= M_IND_WRAP; m++) a_chain_attack(d, m);
    a_ring_attacks(d);
}

/* Net: malformed transmit chains are dropped (used length 0) and the queue keeps going; then
 * the receive avail index runs away while the host sends frames. */
static void attack_net(void) {
    struct ndev *d = &ndevs[0];
    if (!nnets) { fail("attack: no NIC"); return; }
    if (!net_init(d)) return;
    struct vq *q = &d->q[1];
    static const char *const what[] = { "descriptor loop", "buffer outside guest memory",
                                        "buffer address + length wraps", "chain longer than 4 GiB" };
    u32 id, len;
    for (int m = 0; m < 4; m++) {
        memset(d->tx, 0, 72);
        q->desc[0] = (struct vq_desc){ (u64)d->tx, 12, VIRTQ_DESC_F_NEXT, 1 };
        q->desc[1] = (struct vq_desc){ (u64)d->tx + 12, 60, 0, 0 };
        if (m == 0) { q->desc[1].flags = VIRTQ_DESC_F_NEXT; q->desc[1].next = 0; }
        if (m == 1) q->desc[1].addr = OUTSIDE_RAM;
        if (m == 2) q->desc[1].addr = 0xfffffffffffffff8ULL;
        if (m == 3) { q->desc[0].len = 0x80000000u; q->desc[1].len = 0x80000000u; }
        net_publish(d, 1, 0);
        net_kick(d, 1);
        int ok = net_used(d, 1, &id, &len) && len == 0;
        puts("guest: attack net tx ");
        puts(what[m]);
        puts(ok ? ": dropped, completed with length 0\n" : ": (UNEXPECTED)\n");
        if (!ok) fail(what[m]);
    }
    /* No receive buffers, but an avail index 1000 ahead. */
    d->q[0].avail.idx = 1000;
    barrier();
    net_kick(d, 0);
    puts("guest: attack net rx avail index 1000 ahead: armed, waiting for frames\n");
    delay_us(option_num("net_wait_ms", 3000) * 1000);
    puts("guest: attack net rx avail index 1000 ahead: waited\n");
}

static void attack(struct hvm_start_info *si) {
    struct hvm_memmap_entry { u64 addr, size; u32 type, reserved; };
    if (si && si->memmap_paddr) {
        struct hvm_memmap_entry *m = (struct hvm_memmap_entry *)si->memmap_paddr;
        for (u32 i = 0; i < si->memmap_entries; i++)
            if (m[i].type == 1 && m[i].addr + m[i].size > ram_end && m[i].addr + m[i].size <= 0xc0000000ULL)
                ram_end = m[i].addr + m[i].size;
    }
    if (!ram_end) { fail("attack: no RAM in the memory map"); return; }
    static const u32 ids[3] = { 0x10421af4, 0x10441af4, 0x10491af4 };
    for (int k = 0; k < 3; k++) {
        struct adev *d = &adevs[k];
        d->kind = k;
        d->r = &arings[k];
        u8 slot = 0xff;
        for (u8 dev = 0; dev < 32 && slot == 0xff; dev++)
            if (conf_read(dev, 0) == ids[k]) slot = dev;
        if (slot == 0xff) {
            puts("guest: attack: no ");
            puts(akind_name[k]);
            puts(" device, skipped\n");
            continue;
        }
        if (!a_caps(d, slot)) { fail("attack: virtio capabilities"); continue; }
        attack_device(d);
    }
    if (option("attack_net")) attack_net();
    /* Leave the attacked disk with a stopped queue, then use the second disk. */
    if (adevs[0].r) {
        struct adev *d = &adevs[0];
        a_setup(d);
        wr16((u64)d->r->avail + 2, 1000);
        a_kick(d);
    }
    if (ndisks < 2) { fail("attack: no second disk"); return; }
    struct vdev *d1 = &vdevs[1];
    if (!virtio_init(d1, 1)) return;
    u64 cap = disk_capacity(d1);
    int good = 1;
    for (u64 s = 0; s < cap; s += 8) {
        u32 n = cap - s < 8 ? (u32)(cap - s) : 8;
        if (blk_request(d1, 0, s, d1->buf, n * 512, 1, 0) != 0 || !pattern_ok(d1->buf, s, n)) { good = 0; break; }
    }
    CHECK(good, "attack: second disk reads correctly");
    if (good) {
        puts("guest: second disk reads correctly after the attacks (");
        put_dec(cap);
        puts(" sectors)\n");
    }
}

static void issue7_modes(struct hvm_start_info *si) {
    if (!option("blkstream") && !option("blkfull") && !option("attack")) return;
    clock_init();
    setup_interrupts();
    struct acpi_info ai;
    check_acpi(si, &ai);
    scan_pci(ai.ecam);
    if (option("blkstream")) blk_stream();
    if (option("blkfull")) blk_full();
    if (option("attack")) attack(si);
    if (option("hold")) {
        puts(failures ? "guest: FAILED\n" : "guest: PASS\n");
        wait_for_power_button(si);
    }
    puts(failures ? "guest: FAILED\n" : "guest: PASS\n");
    guest_exit(failures ? 1 : 0);
}

void guest_main(struct hvm_start_info *si) {
    if (si && si->magic == 0x336ec578 && si->cmdline_paddr) cmdline = (const char *)si->cmdline_paddr;
    puts("guest: hello, cmdline '");
    puts(cmdline);
    puts("'\n");

    if (option("bench")) {
        if (option("hold")) {
            puts("guest: bench done\n");
            for (;;) __asm__ volatile("cli; hlt");
        }
        guest_exit(0);
    }
    if (option("memtouch")) {
        /* Writes and reads back N MiB from 16 MiB up: a crude memory speed probe. */
        u64 mib = option_num("memtouch", 16);
        volatile u64 *p = (volatile u64 *)0x1000000ULL;
        u64 words = mib << 17;
        for (int pass = 0; pass < 4; pass++)
            for (u64 i = 0; i < words; i++) p[i] = i ^ (u64)pass;
        for (u64 i = 0; i < words; i++) CHECK(p[i] == (i ^ 3), "memtouch readback");
        puts("guest: memtouch done\n");
        guest_exit(failures ? 1 : 0);
    }
    if (option("idle")) {
        puts("guest: idle\n");
        for (;;) __asm__ volatile("cli; hlt");
    }
    if (option("crash")) {
        puts("guest: crashing\n");
        struct { u16 limit; u64 base; } __attribute__((packed)) none = { 0, 0 };
        __asm__ volatile("lidt %0; ud2" ::"m"(none));
    }
    if (option("reboot")) {
        puts("guest: rebooting\n");
        outb(0x64, 0xfe);
        fail("still running after reset");
        guest_exit(1);
    }
    if (option("poweroff")) power_off(si);
    issue5_modes(si);
    issue7_modes(si);

    setup_interrupts();
    struct hvm_memmap_entry { u64 addr, size; u32 type, reserved; };
    if (si && si->magic == 0x336ec578 && si->memmap_paddr) {
        struct hvm_memmap_entry *m = (struct hvm_memmap_entry *)si->memmap_paddr;
        for (u32 i = 0; i < si->memmap_entries; i++) {
            puts("guest: e820 ");
            put_hex(m[i].addr);
            putc(' ');
            put_hex(m[i].size);
            putc(' ');
            put_dec(m[i].type);
            putc('\n');
        }
    }
    struct acpi_info ai;
    check_acpi(si, &ai);
    int mp_cpus = check_mptable();
    u64 want = option_num("expect_cpus", 0);
    if (want) {
        CHECK((u64)ai.cpus == want, "ACPI CPU count");
        CHECK((u64)mp_cpus == want, "MP table CPU count");
    }
    scan_pci(ai.ecam);
    puts("guest: virtio-blk disks=");
    put_dec(ndisks);
    putc('\n');
    if (option("net")) test_net();
    else if (!option("tables")) {
        for (int i = 0; i < ndisks; i++) test_disk(i);
        if (!option("noinput")) test_input();
    }
    if (failures) {
        puts("guest: FAILED\n");
        guest_exit(1);
    }
    puts("guest: PASS\n");
    guest_exit(0);
}
