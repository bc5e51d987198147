// SPDX-License-Identifier: GPL-2.0
/*
 * race_kthread_buggy - BUG: a kernel thread still running module code at rmmod.
 *
 * init starts a "scanner" kthread whose function (in this module's text)
 * loops: do a little work, sleep period_ms, repeat until kthread_should_stop().
 * The exit function never calls kthread_stop(). rmmod frees the module while
 * the thread sleeps inside scanner_fn; when its sleep ends, the scheduler
 * returns it into freed, unmapped text.
 *
 * Stock kernel: the thread takes an instruction-fetch page fault
 * ("BUG: unable to handle page fault for address: ffffffffc0...",
 * "#PF: supervisor instruction fetch in kernel mode", RIP at the bare freed
 * address, "Comm: mh_scanner"), in process context: an oops that kills the
 * thread, not a panic, unless panic_on_oops is set. "[last unloaded:
 * race_kthread_buggy]" names the culprit.
 *
 * The fix (race_kthread_fixed): kthread_stop() in the exit path, which wakes
 * the thread and waits until scanner_fn has returned.
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

static int __init race_kthread_buggy_init(void)
{
	scanner = kthread_run(scanner_fn, NULL, "mh_scanner");
	if (IS_ERR(scanner))
		return PTR_ERR(scanner);
	pr_info("race_kthread_buggy: scanner thread pid %d, period %u ms\n",
		task_pid_nr(scanner), period_ms);
	return 0;
}

static void __exit race_kthread_buggy_exit(void)
{
	/* BUG: no kthread_stop(scanner); the thread keeps running our code. */
	pr_info("race_kthread_buggy: unloading after %lu scans, thread still running\n",
		scans);
}

module_init(race_kthread_buggy_init);
module_exit(race_kthread_buggy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - kthread left running at rmmod (buggy)");
