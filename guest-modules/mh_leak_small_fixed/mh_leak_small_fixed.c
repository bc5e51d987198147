// SPDX-License-Identifier: GPL-2.0
/*
 * mh_leak_small_fixed - the correct twin of mh_leak_small_buggy.
 *
 * Same allocations: leak_bytes bytes (default 3072) as 64-byte kmalloc
 * objects at every load. The pointers are kept in module data and every
 * object is freed at unload, so a load/unload loop returns all of it: the
 * kmalloc-64 cache may keep a few empty slab pages around (SLUB holds some
 * partial slabs per node and CPU), but it stops growing after the first
 * cycles.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

#define LEAK_OBJECT_BYTES 64
#define MAX_LEAK_BYTES (64 * 1024)
#define MAX_OBJECTS (MAX_LEAK_BYTES / LEAK_OBJECT_BYTES)

static unsigned int leak_bytes = 3072;
module_param(leak_bytes, uint, 0444);
MODULE_PARM_DESC(leak_bytes, "bytes allocated per load in 64-byte kmalloc objects (default 3072, at most 65536)");

static void *objects[MAX_OBJECTS];
static unsigned int count;

static void free_objects(void)
{
	while (count > 0)
		kfree(objects[--count]);
}

static int __init mh_leak_small_fixed_init(void)
{
	unsigned int wanted;

	if (leak_bytes > MAX_LEAK_BYTES)
		return -EINVAL;
	wanted = leak_bytes / LEAK_OBJECT_BYTES;
	while (count < wanted) {
		objects[count] = kmalloc(LEAK_OBJECT_BYTES, GFP_KERNEL);
		if (!objects[count]) {
			/* The fix covers the error path too: a failed load frees what it got. */
			free_objects();
			return -ENOMEM;
		}
		memset(objects[count], 0x6b, LEAK_OBJECT_BYTES);
		count++;
	}
	pr_info("mh_leak_small_fixed: allocated %u objects of %u bytes\n",
		count, LEAK_OBJECT_BYTES);
	return 0;
}

static void __exit mh_leak_small_fixed_exit(void)
{
	/* The fix: every object allocated at load is freed before the module goes. */
	free_objects();
	pr_info("mh_leak_small_fixed: unloaded, memory returned\n");
}

module_init(mh_leak_small_fixed_init);
module_exit(mh_leak_small_fixed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: allocates 3 KiB per load in 64-byte kmalloc objects and frees them at unload");
