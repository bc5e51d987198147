// SPDX-License-Identifier: GPL-2.0
/*
 * race_selfput_buggy - BUG: module code drops the module's own last reference
 * and keeps running.
 *
 * init pins the module (__module_get) and starts a one-shot "job" thread.
 * The thread works for work_ms, then releases the pin with
 * module_put(THIS_MODULE) - and carries on in module code: it logs and
 * lingers linger_ms "tidying up", then returns. From the moment of the put,
 * rmmod is allowed to succeed and free the text that the thread is still
 * executing; when its sleep ends it returns into unmapped memory.
 *
 * Scenario: load, wait longer than work_ms but shorter than work_ms +
 * linger_ms (e.g. 300 ms with the defaults), rmmod (succeeds), wait.
 *
 * Stock kernel: "BUG: unable to handle page fault for address: ffffffffc0...",
 * "#PF: supervisor instruction fetch", "Comm: mh_selfput", RIP at the bare
 * freed address: an oops in the thread, "[last unloaded:
 * race_selfput_buggy]".
 *
 * The same bug in other clothes: taking the reference too late (a
 * try_module_get() at the start of the thread or work item, when rmmod may
 * already be running), or a module_put() in a callback that then returns
 * through module code. The fix (race_selfput_fixed): the last thing module
 * code does is module_put_and_kthread_exit(), which drops the reference and
 * exits from core kernel text without ever returning into the module.
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
MODULE_PARM_DESC(linger_ms, "time the job thread stays in module code after its module_put (default 500)");

static int job_fn(void *unused)
{
	msleep(work_ms);
	pr_info("race_selfput_buggy: job done, dropping the module reference\n");
	/* BUG: after this put, rmmod may free the code we are running. */
	module_put(THIS_MODULE);
	msleep(linger_ms);
	pr_info("race_selfput_buggy: job thread leaving\n");
	return 0;
}

static int __init race_selfput_buggy_init(void)
{
	struct task_struct *job;

	/* Pin the module for the job thread before it starts. */
	__module_get(THIS_MODULE);
	job = kthread_run(job_fn, NULL, "mh_selfput");
	if (IS_ERR(job)) {
		module_put(THIS_MODULE);
		return PTR_ERR(job);
	}
	pr_info("race_selfput_buggy: job thread started (work %u ms, linger %u ms)\n",
		work_ms, linger_ms);
	return 0;
}

static void __exit race_selfput_buggy_exit(void)
{
	pr_info("race_selfput_buggy: unloading\n");
}

module_init(race_selfput_buggy_init);
module_exit(race_selfput_buggy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - module drops its own reference too early (buggy)");
