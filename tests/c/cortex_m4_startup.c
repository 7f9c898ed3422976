/* Bare-metal Cortex-M4 start-up for QEMU mps2-an386 (tests/test_csource.py): a vector table,
   a reset handler that copies .data, zeroes .bss, opens the semihosting handles (rdimon) and
   exits with main()'s status (QEMU then exits with it). */
#include <stdint.h>
#include <stdlib.h>
extern uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_top;
extern void initialise_monitor_handles(void);
extern int main(void);
void reset_handler(void);
static void fault_handler(void)
{
    for (;;) {
    }
}
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&_stack_top, reset_handler, fault_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler,
};
void reset_handler(void)
{
    uint32_t *src = &_data_load, *dst = &_data_start;
    while (dst < &_data_end)
        *dst++ = *src++;
    for (dst = &_bss_start; dst < &_bss_end; dst++)
        *dst = 0;
    initialise_monitor_handles();
    exit(main());
}
/* -nostartfiles drops crti/crtn: newlib's exit() still calls _fini */
void _init(void);
void _fini(void);
void _init(void)
{
}
void _fini(void)
{
}
