// SPDX-License-Identifier: GPL-2.0
/*
 * race_timer_fixed - the correct twin of race_timer_buggy.
 *
 * Same self-re-arming heartbeat timer; the exit path shuts it down with
 * timer_shutdown_sync() (kernel >= 6.2; del_timer_sync() before). Both wait
 * for a callback running on another CPU to finish. timer_shutdown_sync()
 * additionally makes any later mod_timer() on this timer a no-op, so the
 * callback cannot re-arm it behind our back; del_timer_sync() copes with a
 * self-re-arming callback by retrying until the timer is neither pending nor
 * running. Only after that may the module's memory go away.
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

static int __init race_timer_fixed_init(void)
{
	timer_setup(&heartbeat.timer, heartbeat_fn, 0);
	mod_timer(&heartbeat.timer, jiffies + msecs_to_jiffies(period_ms));
	pr_info("race_timer_fixed: heartbeat every %u ms\n", period_ms);
	return 0;
}

static void __exit race_timer_fixed_exit(void)
{
	/* FIX: stop the timer and wait for a running callback before returning. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	timer_shutdown_sync(&heartbeat.timer);
#else
	del_timer_sync(&heartbeat.timer);
#endif
	pr_info("race_timer_fixed: unloading after %lu beats, timer stopped\n",
		heartbeat.beats);
}

module_init(race_timer_fixed_init);
module_exit(race_timer_fixed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - timer stopped at rmmod (fixed)");
