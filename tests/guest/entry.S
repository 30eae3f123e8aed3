/* PVH entry for the test guest: 32-bit protected mode, paging off, EBX = hvm_start_info.
 * Marks the first instruction on the debug port, builds identity page tables for the first
 * 4 GiB, enters long mode and calls guest_main(start_info). Also the IDT stubs. */

#define DEBUG_PORT 0x80

    .section .note.Xen, "a"
    .p2align 2
    .long 4                 /* name size: "Xen\0" */
    .long 4                 /* descriptor size */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

    .section .text.entry, "ax"
    .code32
    .globl pvh_start
pvh_start:
    /* The boot marker: the very first thing the guest does. */
    mov $1, %al
    out %al, $DEBUG_PORT
    /* And a newline on the UART right away, so an observer outside the VM can time the
     * first instruction too (QEMU has no debug-port log). */
    mov $0x3f8, %dx
    mov $'\n', %al
    out %al, %dx
    mov %ebx, %esi

    /* Zero .bss (page tables, stack, rings live there). */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    cld
    rep stosl

    /* PML4[0] -> PDPT, PDPT[0..3] -> PD0..3, 2048 x 2 MiB pages. */
    mov $pdpt, %eax
    or $3, %eax
    mov %eax, pml4
    mov $pd, %eax
    or $3, %eax
    xor %ecx, %ecx
1:  mov %eax, pdpt(,%ecx,8)
    add $0x1000, %eax
    inc %ecx
    cmp $4, %ecx
    jb 1b
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, pd(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 2b

    mov %cr4, %eax
    or $0x20, %eax          /* PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx   /* EFER */
    rdmsr
    or $0x100, %eax         /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax    /* PG | PE */
    mov %eax, %cr0
    lgdt gdt_desc
    ljmp $0x08, $long_mode

    .code64
long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $stack_top, %rsp
    mov %esi, %edi
    call guest_main
3:  cli
    hlt
    jmp 3b

/* Exceptions: push the vector (and a zero where the CPU pushes no error code). */
.macro EXC_NOERR n
    .globl exc\n
exc\n:
    push $0
    push $\n
    jmp exc_common
.endm
.macro EXC_ERR n
    .globl exc\n
exc\n:
    push $\n
    jmp exc_common
.endm

EXC_NOERR 0
EXC_NOERR 1
EXC_NOERR 2
EXC_NOERR 3
EXC_NOERR 4
EXC_NOERR 5
EXC_NOERR 6
EXC_NOERR 7
EXC_ERR 8
EXC_NOERR 9
EXC_ERR 10
EXC_ERR 11
EXC_ERR 12
EXC_ERR 13
EXC_ERR 14
EXC_NOERR 15
EXC_NOERR 16
EXC_ERR 17
EXC_NOERR 18
EXC_NOERR 19
EXC_NOERR 20
EXC_ERR 21
EXC_NOERR 22
EXC_NOERR 23
EXC_NOERR 24
EXC_NOERR 25
EXC_NOERR 26
EXC_NOERR 27
EXC_NOERR 28
EXC_ERR 29
EXC_ERR 30
EXC_NOERR 31

exc_common:
    mov (%rsp), %rdi        /* vector */
    mov 8(%rsp), %rsi       /* error code */
    mov 16(%rsp), %rdx      /* rip */
    and $-16, %rsp
    call guest_exception    /* does not return */
4:  cli
    hlt
    jmp 4b

.macro ISR name, handler
    .globl \name
\name:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    call \handler
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq
.endm

ISR isr_msi, msi_handler
ISR isr_timer, timer_handler
ISR isr_button, button_handler

    .globl isr_spurious
isr_spurious:
    iretq

    .section .rodata
    .globl exc_stubs
    .p2align 3
exc_stubs:
    .quad exc0, exc1, exc2, exc3, exc4, exc5, exc6, exc7
    .quad exc8, exc9, exc10, exc11, exc12, exc13, exc14, exc15
    .quad exc16, exc17, exc18, exc19, exc20, exc21, exc22, exc23
    .quad exc24, exc25, exc26, exc27, exc28, exc29, exc30, exc31

    .data
    .p2align 3
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt

    .bss
    .p2align 12
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096 * 4
stack:  .skip 16384
stack_top:

    .section .note.GNU-stack, "", @progbits
