// SPDX-License-Identifier: GPL-2.0
/*
 * mh_leaky - a deliberate memory leak, the target of memory-growth detection.
 *
 * Every load allocates leak_kb KiB with kmalloc (in 1 KiB objects, so the
 * growth shows up in the kmalloc-1k slab cache and in SUnreclaim) and
 * leak_vmalloc_kb KiB with vmalloc (VmallocUsed, /proc/vmallocinfo names
 * mh_leaky_init as the caller), and forgets the pointers. Nothing is freed at
 * unload, so N load/unload cycles leak N * (leak_kb + leak_vmalloc_kb) KiB.
 * With CONFIG_DEBUG_KMEMLEAK a scan reports the objects as unreferenced.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

#define LEAK_OBJECT_BYTES 1024

static unsigned int leak_kb = 64;
module_param(leak_kb, uint, 0444);
MODULE_PARM_DESC(leak_kb, "KiB leaked with kmalloc per load, in 1 KiB objects (default 64)");

static unsigned int leak_vmalloc_kb = 256;
module_param(leak_vmalloc_kb, uint, 0444);
MODULE_PARM_DESC(leak_vmalloc_kb, "KiB leaked with vmalloc per load (default 256)");

static int __init mh_leaky_init(void)
{
	unsigned int i;
	void *p;

	for (i = 0; i < leak_kb; i++) {
		p = kmalloc(LEAK_OBJECT_BYTES, GFP_KERNEL);
		if (!p)
			return -ENOMEM;
		/* Touch it, so the leak is real memory and not just accounting. */
		memset(p, 0x6b, LEAK_OBJECT_BYTES);
	}

	if (leak_vmalloc_kb) {
		p = vmalloc(leak_vmalloc_kb * 1024UL);
		if (!p)
			return -ENOMEM;
		memset(p, 0x6b, leak_vmalloc_kb * 1024UL);
	}

	pr_info("mh_leaky: leaked %u KiB kmalloc + %u KiB vmalloc\n",
		leak_kb, leak_vmalloc_kb);
	return 0;
}

static void __exit mh_leaky_exit(void)
{
	/* Deliberately frees nothing. */
	pr_info("mh_leaky: unloaded (memory not returned)\n");
}

module_init(mh_leaky_init);
module_exit(mh_leaky_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: leaks kmalloc and vmalloc memory on every load");
