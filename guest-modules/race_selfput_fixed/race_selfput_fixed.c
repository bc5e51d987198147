// SPDX-License-Identifier: GPL-2.0
/*
 * race_selfput_fixed - the correct twin of race_selfput_buggy.
 *
 * Same one-shot job thread pinning the module. All of its work, including
 * the lingering, happens while it still holds the reference; the very last
 * call is module_put_and_kthread_exit(), which drops the reference and ends
 * the thread from core kernel text, so no instruction of this module runs
 * after the put. While the thread runs, rmmod correctly refuses with EAGAIN
 * ("Resource temporarily unavailable"); after work_ms + linger_ms it works.
 *
 * The reference is taken in init, before the thread exists; taking it inside
 * the thread would be too late (nothing would stop an rmmod that already
 * started).
 */
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/module.h>

static unsigned int work_ms = 100;
module_param(work_ms, uint, 0444);
MODULE_PARM_DESC(work_ms, "time the job thread works while holding the module (default 100)");

static unsigned int linger_ms = 500;
module_param(linger_ms, uint, 0444);
MODULE_PARM_DESC(linger_ms, "time the job thread tidies up, still holding the module (default 500)");

static int job_fn(void *unused)
{
	msleep(work_ms);
	pr_info("race_selfput_fixed: job done, tidying up\n");
	msleep(linger_ms);
	pr_info("race_selfput_fixed: job thread leaving\n");
	/* FIX: drop the reference and exit without returning into the module. */
	module_put_and_kthread_exit(0);
}

static int __init race_selfput_fixed_init(void)
{
	struct task_struct *job;

	/* Pin the module for the job thread before it starts. */
	__module_get(THIS_MODULE);
	job = kthread_run(job_fn, NULL, "mh_selfput");
	if (IS_ERR(job)) {
		module_put(THIS_MODULE);
		return PTR_ERR(job);
	}
	pr_info("race_selfput_fixed: job thread started (work %u ms, linger %u ms)\n",
		work_ms, linger_ms);
	return 0;
}

static void __exit race_selfput_fixed_exit(void)
{
	pr_info("race_selfput_fixed: unloading\n");
}

module_init(race_selfput_fixed_init);
module_exit(race_selfput_fixed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - module reference dropped correctly (fixed)");
