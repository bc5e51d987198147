// SPDX-License-Identifier: GPL-2.0
/* Warns at known lines so the symbolizer's file:line can be checked. */
#include <linux/module.h>

static int symtest_value = 1;

static noinline void symtest_check(int value)
{
	WARN_ON(value != 0);
}

static int __init symtest_init(void)
{
	symtest_check(symtest_value);
	return 0;
}

static void __exit symtest_exit(void)
{
	WARN(symtest_value, "symtest: exit\n");
}

module_init(symtest_init);
module_exit(symtest_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("WARNs at known lines, for symbolizer tests");
