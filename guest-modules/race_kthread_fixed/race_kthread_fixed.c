// SPDX-License-Identifier: GPL-2.0
/*
 * race_kthread_fixed - the correct twin of race_kthread_buggy.
 *
 * Same scanner kthread. The exit path calls kthread_stop(), which sets the
 * "should stop" flag, wakes the thread (msleep_interruptible() returns
 * early) and waits for scanner_fn to return; only then can the module text
 * go away. The thread must not exit on its own before kthread_stop() (the
 * task_struct could be gone); here it only leaves when asked.
 */
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/sched.h>

static unsigned int period_ms = 20;
module_param(period_ms, uint, 0444);
MODULE_PARM_DESC(period_ms, "sleep between scanner iterations in ms (default 20)");

static struct task_struct *scanner;
static unsigned long scans;

static int scanner_fn(void *unused)
{
	while (!kthread_should_stop()) {
		scans++;
		msleep_interruptible(period_ms);
	}
	return 0;
}

static int __init race_kthread_fixed_init(void)
{
	scanner = kthread_run(scanner_fn, NULL, "mh_scanner");
	if (IS_ERR(scanner))
		return PTR_ERR(scanner);
	pr_info("race_kthread_fixed: scanner thread pid %d, period %u ms\n",
		task_pid_nr(scanner), period_ms);
	return 0;
}

static void __exit race_kthread_fixed_exit(void)
{
	/* FIX: ask the thread to stop and wait until it left our code. */
	kthread_stop(scanner);
	pr_info("race_kthread_fixed: unloading after %lu scans, thread stopped\n",
		scans);
}

module_init(race_kthread_fixed_init);
module_exit(race_kthread_fixed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - kthread stopped at rmmod (fixed)");
