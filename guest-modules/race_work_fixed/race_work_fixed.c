// SPDX-License-Identifier: GPL-2.0
/*
 * race_work_fixed - the correct twin of race_work_buggy.
 *
 * Same self-re-queuing delayed work on a private workqueue. The exit path:
 *  1. cancel_delayed_work_sync(): deletes the pending delay timer, removes a
 *     queued item, and waits for a running poll_fn; while it runs, the work
 *     is marked as being cancelled, so the re-queue inside poll_fn is refused.
 *  2. destroy_workqueue(): drains and frees the private workqueue.
 * destroy_workqueue() alone is not enough: it cannot see a delay timer that
 * is still pending (the item is not on any queue yet, and would later be
 * queued onto the freed workqueue), and a self-re-queuing item keeps the
 * drain busy.
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

static int __init race_work_fixed_init(void)
{
	poll_wq = alloc_workqueue("race_work_fixed", 0, 0);
	if (!poll_wq)
		return -ENOMEM;
	queue_delayed_work(poll_wq, &poll_work, msecs_to_jiffies(period_ms));
	pr_info("race_work_fixed: polling every %u ms\n", period_ms);
	return 0;
}

static void __exit race_work_fixed_exit(void)
{
	/* FIX: stop the work (even though it re-queues itself), then the queue. */
	cancel_delayed_work_sync(&poll_work);
	destroy_workqueue(poll_wq);
	pr_info("race_work_fixed: unloading after %lu polls, work cancelled\n",
		polls);
}

module_init(race_work_fixed_init);
module_exit(race_work_fixed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - delayed work cancelled at rmmod (fixed)");
