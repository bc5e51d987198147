// SPDX-License-Identifier: GPL-2.0
/*
 * mh_leak_small_buggy - a leak small enough to hide in the kernel's own noise.
 *
 * Every load allocates leak_bytes bytes (default 3072) as 64-byte kmalloc
 * objects (48 of them: the kmalloc-64 slab cache, SUnreclaim) and forgets
 * them. A 4 KiB slab page holds 64 such objects, so the growth shows up as a
 * staircase of whole pages, about three pages every four cycles, the kind of
 * step a correct module's caches also take once in a while. 6.12 under TCG
 * measured 2,958 B/cycle over 100 cycles for this size of leak: only a
 * verdict that weighs the evidence tells it from a correct module, whose
 * growth was 0-12 KiB over 10 cycles. mh_leak_small_fixed is its twin.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

#define LEAK_OBJECT_BYTES 64
#define MAX_LEAK_BYTES (64 * 1024)

static unsigned int leak_bytes = 3072;
module_param(leak_bytes, uint, 0444);
MODULE_PARM_DESC(leak_bytes, "bytes leaked per load in 64-byte kmalloc objects (default 3072, at most 65536)");

static int __init mh_leak_small_buggy_init(void)
{
	unsigned int i, count;
	void *p;

	if (leak_bytes > MAX_LEAK_BYTES)
		return -EINVAL;
	count = leak_bytes / LEAK_OBJECT_BYTES;
	for (i = 0; i < count; i++) {
		p = kmalloc(LEAK_OBJECT_BYTES, GFP_KERNEL);
		if (!p)
			return -ENOMEM;
		/* Touch it, so the leak is real memory and not just accounting. */
		memset(p, 0x6b, LEAK_OBJECT_BYTES);
		/* The bug: the pointer is dropped here and never freed. */
	}
	pr_info("mh_leak_small_buggy: allocated %u objects of %u bytes\n",
		count, LEAK_OBJECT_BYTES);
	return 0;
}

static void __exit mh_leak_small_buggy_exit(void)
{
	/* Nothing to free: the objects were never remembered. */
	pr_info("mh_leak_small_buggy: unloaded (memory not returned)\n");
}

module_init(mh_leak_small_buggy_init);
module_exit(mh_leak_small_buggy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: leaks 3 KiB per load in 64-byte kmalloc objects");
