// SPDX-License-Identifier: GPL-2.0
/*
 * race_waitq_buggy - BUG: a reader asleep in module code on a wait queue when
 * the module is unloaded, and nobody wakes it.
 *
 * /proc/race_waitq_buggy is an "event" file: read() sleeps on event_wq until
 * an event arrives (in this model none ever does). A process that reads it,
 * e.g. `cat /proc/race_waitq_buggy &`, is asleep inside event_read(), in this
 * module's text, waiting on a wait queue head in this module's data.
 *
 * The exit function calls remove_proc_entry() without first waking the
 * sleeper. procfs protects the module here: remove_proc_entry() waits until
 * every read() in progress has returned, so the module is not freed under the
 * sleeper. But the sleeper never returns, so rmmod blocks forever in
 * uninterruptible sleep (D state): the unload hangs.
 *
 * Stock kernel: "INFO: task rmmod:PID blocked for more than N seconds." from
 * the hung-task detector (lower /proc/sys/kernel/hung_task_timeout_secs from
 * the default 120 to see it quickly), with proc_entry_rundown,
 * remove_proc_entry and race_waitq_buggy_exit [race_waitq_buggy] in the
 * stack. Killing the reader (its sleep is interruptible) lets rmmod finish.
 * With a char device or a kthread instead of procfs nothing would wait for
 * the sleeper, and its wake-up would return into freed text (see
 * race_fops_buggy and race_kthread_buggy).
 *
 * The fix (race_waitq_fixed): mark the module as going away and wake all
 * sleepers before remove_proc_entry(); read() sees the flag and returns.
 */
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/wait.h>

static DECLARE_WAIT_QUEUE_HEAD(event_wq);
static bool event_ready;

static ssize_t event_read(struct file *file, char __user *buf, size_t count,
			  loff_t *ppos)
{
	int err;

	err = wait_event_interruptible(event_wq, READ_ONCE(event_ready));
	if (err)
		return err;
	return 0;
}

static const struct proc_ops event_proc_ops = {
	.proc_read = event_read,
	.proc_lseek = noop_llseek,
};

static int __init race_waitq_buggy_init(void)
{
	if (!proc_create("race_waitq_buggy", 0444, NULL, &event_proc_ops))
		return -ENOMEM;
	pr_info("race_waitq_buggy: readers of /proc/race_waitq_buggy sleep until an event\n");
	return 0;
}

static void __exit race_waitq_buggy_exit(void)
{
	/* BUG: a reader is asleep in event_read(); this waits for it forever. */
	remove_proc_entry("race_waitq_buggy", NULL);
	pr_info("race_waitq_buggy: unloaded without waking the readers\n");
}

module_init(race_waitq_buggy_init);
module_exit(race_waitq_buggy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - sleeper on a wait queue not woken at rmmod (buggy)");
