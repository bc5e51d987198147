// SPDX-License-Identifier: GPL-2.0
/*
 * race_fops_buggy - BUG: file_operations without .owner.
 *
 * The module registers a misc character device, /dev/race_fops_buggy, whose
 * read() returns a short message. Its file_operations has no
 * `.owner = THIS_MODULE`. When a process opens the device, the VFS takes a
 * reference on fops->owner to pin the module while the file is open; with no
 * owner, nothing is pinned. So:
 *
 *   exec 3</dev/race_fops_buggy   # open, keep the fd
 *   rmmod race_fops_buggy         # succeeds: the refcount is 0
 *   cat <&3                       # read() through the freed fops
 *
 * misc_deregister() removes the device node but not the already-open file:
 * file->f_op still points at the file_operations in the freed module, and
 * read() or close() dereferences it.
 *
 * Stock kernel: "BUG: unable to handle page fault for address:
 * ffffffffc0..." in vfs_read (or in __fput on close), in process context:
 * an oops that kills the reader. "[last unloaded: race_fops_buggy]" names
 * the culprit.
 *
 * The fix (race_fops_fixed): `.owner = THIS_MODULE`; rmmod then refuses
 * while the file is open ("Resource temporarily unavailable", EAGAIN).
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>

static const char message[] = "race_fops_buggy says hello\n";

static ssize_t hello_read(struct file *file, char __user *buf, size_t count,
			  loff_t *ppos)
{
	return simple_read_from_buffer(buf, count, ppos, message,
				       sizeof(message) - 1);
}

static const struct file_operations hello_fops = {
	/* BUG: no .owner = THIS_MODULE, an open file does not pin the module. */
	.read = hello_read,
	.llseek = default_llseek,
};

static struct miscdevice hello_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "race_fops_buggy",
	.fops = &hello_fops,
	.mode = 0444,
};

static int __init race_fops_buggy_init(void)
{
	int err = misc_register(&hello_dev);

	if (err)
		return err;
	pr_info("race_fops_buggy: /dev/race_fops_buggy registered\n");
	return 0;
}

static void __exit race_fops_buggy_exit(void)
{
	misc_deregister(&hello_dev);
	pr_info("race_fops_buggy: unloaded; files still open now point at freed fops\n");
}

module_init(race_fops_buggy_init);
module_exit(race_fops_buggy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - file_operations without .owner (buggy)");
