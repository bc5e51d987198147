// SPDX-License-Identifier: GPL-2.0
/*
 * race_timer_buggy - BUG: a timer_list still armed when the module is unloaded.
 *
 * The module runs a periodic "heartbeat" timer that re-arms itself every
 * period_ms. Its exit function forgets to stop it. rmmod then frees the
 * module's text and data, but the timer wheel still links the timer_list
 * (which lives in this module's .bss) and still points at heartbeat_fn (in
 * this module's .text). At the next expiry the timer softirq walks freed,
 * unmapped module memory.
 *
 * Stock kernel: "BUG: unable to handle page fault for address: ffffffffc0..."
 * with RIP in __run_timers (or call_timer_fn), in softirq context, so it ends
 * in "Kernel panic - not syncing: Fatal exception in interrupt". The module
 * is named only by "[last unloaded: race_timer_buggy]".
 *
 * The fix (race_timer_fixed): timer_shutdown_sync() in the exit path, which
 * waits for a running callback and stops the callback from re-arming.
 */
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/timer.h>
#include <linux/version.h>

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
#define heartbeat_from_timer timer_container_of
#else
#define heartbeat_from_timer from_timer
#endif

static unsigned int period_ms = 10;
module_param(period_ms, uint, 0444);
MODULE_PARM_DESC(period_ms, "heartbeat timer period in ms (default 10)");

struct heartbeat {
	struct timer_list timer;
	unsigned long beats;
};

static struct heartbeat heartbeat;

static void heartbeat_fn(struct timer_list *t)
{
	struct heartbeat *hb = heartbeat_from_timer(hb, t, timer);

	hb->beats++;
	mod_timer(&hb->timer, jiffies + msecs_to_jiffies(period_ms));
}

static int __init race_timer_buggy_init(void)
{
	timer_setup(&heartbeat.timer, heartbeat_fn, 0);
	mod_timer(&heartbeat.timer, jiffies + msecs_to_jiffies(period_ms));
	pr_info("race_timer_buggy: heartbeat every %u ms\n", period_ms);
	return 0;
}

static void __exit race_timer_buggy_exit(void)
{
	/* BUG: the heartbeat timer is still armed and re-arms itself. */
	pr_info("race_timer_buggy: unloading after %lu beats, timer still armed\n",
		heartbeat.beats);
}

module_init(race_timer_buggy_init);
module_exit(race_timer_buggy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - timer left armed at rmmod (buggy)");
