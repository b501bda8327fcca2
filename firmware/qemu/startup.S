/* Startup for the unit tests on QEMU mps2-an386: vector table, FPU on, .data/.bss set up,
 * static constructors, main(), and main's return value as QEMU's exit code through
 * semihosting SYS_EXIT_EXTENDED. */
    .syntax unified
    .cpu cortex-m4
    .fpu fpv4-sp-d16
    .thumb

    .section .vectors, "a", %progbits
    .align 2
    .word __stack_top
    .word reset_handler
    .word nmi_handler               /* the watchdog's warning (a program may wait for its reset) */
    .rept 13                        /* HardFault .. SysTick: any of them ends the run */
    .word fault_handler
    .endr

    .text
    .thumb_func
    .global reset_handler
reset_handler:
    ldr r0, =0xE000ED88             /* CPACR: full access to CP10/CP11 (the FPU) */
    ldr r1, [r0]
    orr r1, r1, #(0xF << 20)
    str r1, [r0]
    dsb
    isb
    ldr r0, =__data_start           /* copy .data from its load address */
    ldr r1, =__data_end
    ldr r2, =__data_load
1:  cmp r0, r1
    bhs 2f
    ldr r3, [r2], #4
    str r3, [r0], #4
    b 1b
2:  ldr r0, =__bss_start            /* zero .bss */
    ldr r1, =__bss_end
    movs r2, #0
3:  cmp r0, r1
    bhs 4f
    str r2, [r0], #4
    b 3b
4:  ldr r4, =__init_array_start     /* static constructors */
    ldr r5, =__init_array_end
5:  cmp r4, r5
    bhs 6f
    ldr r3, [r4], #4
    blx r3
    b 5b
6:  bl main
    b semihosting_exit              /* exit code in r0 */

    .weak nmi_handler
    .thumb_set nmi_handler, fault_handler

    .thumb_func
fault_handler:
    movs r0, #99
    b semihosting_exit

/* void semihosting_exit(int code): SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit. */
    .thumb_func
    .global semihosting_exit
semihosting_exit:
    sub sp, sp, #8
    ldr r1, =0x20026
    str r1, [sp]
    str r0, [sp, #4]
    movs r0, #0x20
    mov r1, sp
    bkpt 0xAB
    b .

/* int semihosting_call(int operation, const void* argument): the result in r0 */
    .thumb_func
    .global semihosting_call
semihosting_call:
    bkpt 0xAB
    bx lr
