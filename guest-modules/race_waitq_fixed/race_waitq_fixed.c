// SPDX-License-Identifier: GPL-2.0
/*
 * race_waitq_fixed - the correct twin of race_waitq_buggy.
 *
 * Same /proc event file whose read() sleeps on a wait queue. The exit path
 * first sets going_away and wakes every sleeper; event_read() re-checks its
 * condition, sees the flag and returns 0 (end of file). remove_proc_entry()
 * then waits for those readers to leave the module's code (and refuses new
 * ones), so by the time the module is freed nobody is inside it.
 *
 * The order matters: set the flag before the wake-up (wait_event re-checks
 * the condition after being woken), and wake before remove_proc_entry()
 * (which waits for the readers).
 */
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/wait.h>

static DECLARE_WAIT_QUEUE_HEAD(event_wq);
static bool event_ready;
static bool going_away;

static ssize_t event_read(struct file *file, char __user *buf, size_t count,
			  loff_t *ppos)
{
	int err;

	err = wait_event_interruptible(event_wq, READ_ONCE(event_ready) ||
						 READ_ONCE(going_away));
	if (err)
		return err;
	return 0;
}

static const struct proc_ops event_proc_ops = {
	.proc_read = event_read,
	.proc_lseek = noop_llseek,
};

static int __init race_waitq_fixed_init(void)
{
	if (!proc_create("race_waitq_fixed", 0444, NULL, &event_proc_ops))
		return -ENOMEM;
	pr_info("race_waitq_fixed: readers of /proc/race_waitq_fixed sleep until an event\n");
	return 0;
}

static void __exit race_waitq_fixed_exit(void)
{
	/* FIX: wake the sleepers first; remove_proc_entry() waits for them. */
	WRITE_ONCE(going_away, true);
	wake_up_all(&event_wq);
	remove_proc_entry("race_waitq_fixed", NULL);
	pr_info("race_waitq_fixed: unloaded after waking the readers\n");
}

module_init(race_waitq_fixed_init);
module_exit(race_waitq_fixed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - sleepers woken before rmmod (fixed)");
