// SPDX-License-Identifier: GPL-2.0
/*
 * mh_trivial - the smallest well-behaved module: one line at load, one at
 * unload, nothing left behind. Scenarios use it as the "clean" baseline and
 * to measure load/unload cost.
 */
#include <linux/module.h>

static int __init mh_trivial_init(void)
{
	pr_info("mh_trivial: loaded\n");
	return 0;
}

static void __exit mh_trivial_exit(void)
{
	pr_info("mh_trivial: unloaded\n");
}

module_init(mh_trivial_init);
module_exit(mh_trivial_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: trivial module that loads and unloads cleanly");
