// SPDX-License-Identifier: GPL-2.0
/*
 * race_fops_fixed - the correct twin of race_fops_buggy.
 *
 * Same misc device, with `.owner = THIS_MODULE` in its file_operations.
 * open() goes through fops_get(), which takes a reference on the owner
 * module, and the final fput() drops it after ->release(). While any file is
 * open the module's refcount is non-zero, so rmmod (delete_module) refuses
 * with EAGAIN, "Resource temporarily unavailable", instead of freeing code
 * that open files still point to. Once the file is closed, rmmod works.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>

static const char message[] = "race_fops_fixed says hello\n";

static ssize_t hello_read(struct file *file, char __user *buf, size_t count,
			  loff_t *ppos)
{
	return simple_read_from_buffer(buf, count, ppos, message,
				       sizeof(message) - 1);
}

static const struct file_operations hello_fops = {
	/* FIX: every open file pins this module. */
	.owner = THIS_MODULE,
	.read = hello_read,
	.llseek = default_llseek,
};

static struct miscdevice hello_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "race_fops_fixed",
	.fops = &hello_fops,
	.mode = 0444,
};

static int __init race_fops_fixed_init(void)
{
	int err = misc_register(&hello_dev);

	if (err)
		return err;
	pr_info("race_fops_fixed: /dev/race_fops_fixed registered\n");
	return 0;
}

static void __exit race_fops_fixed_exit(void)
{
	misc_deregister(&hello_dev);
	pr_info("race_fops_fixed: unloaded\n");
}

module_init(race_fops_fixed_init);
module_exit(race_fops_fixed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - file_operations with .owner (fixed)");
