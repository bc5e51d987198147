// SPDX-License-Identifier: GPL-2.0
/*
 * race_work_buggy - BUG: delayed work that re-queues itself, and a private
 * workqueue, both left behind at rmmod.
 *
 * The module polls "hardware" from a delayed work item on its own workqueue;
 * the work function re-queues itself every period_ms. The exit function
 * neither cancels the work nor destroys the workqueue. After rmmod:
 *  - the delayed_work (its timer_list and work_struct live in this module's
 *    .bss) is still linked into the timer wheel or the worker pool's list;
 *  - poll_fn, the function the worker would call, is in freed module text;
 *  - the workqueue itself is leaked (it stays in the workqueue list and is
 *    never flushed).
 * Depending on where the work item is when the memory goes away, the kernel
 * faults in the timer softirq (__run_timers, the delay timer is pending) or in
 * a kworker (process_one_work, the item is queued or about to run). Stock
 * kernel: "BUG: unable to handle page fault", "[last unloaded:
 * race_work_buggy]", and a panic when it happens in interrupt context.
 *
 * The fix (race_work_fixed): cancel_delayed_work_sync(), which copes with a
 * self-re-queuing work item, then destroy_workqueue().
 */
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/workqueue.h>

static unsigned int period_ms = 5;
module_param(period_ms, uint, 0444);
MODULE_PARM_DESC(period_ms, "poll period of the self-re-queuing work in ms (default 5)");

static struct workqueue_struct *poll_wq;
static unsigned long polls;

static void poll_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(poll_work, poll_fn);

static void poll_fn(struct work_struct *work)
{
	polls++;
	queue_delayed_work(poll_wq, &poll_work, msecs_to_jiffies(period_ms));
}

static int __init race_work_buggy_init(void)
{
	poll_wq = alloc_workqueue("race_work_buggy", 0, 0);
	if (!poll_wq)
		return -ENOMEM;
	queue_delayed_work(poll_wq, &poll_work, msecs_to_jiffies(period_ms));
	pr_info("race_work_buggy: polling every %u ms\n", period_ms);
	return 0;
}

static void __exit race_work_buggy_exit(void)
{
	/*
	 * BUG: no cancel_delayed_work_sync(&poll_work) and no
	 * destroy_workqueue(poll_wq): the work keeps re-queuing itself.
	 */
	pr_info("race_work_buggy: unloading after %lu polls, work still queued\n",
		polls);
}

module_init(race_work_buggy_init);
module_exit(race_work_buggy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - self-re-queuing delayed work left at rmmod (buggy)");
