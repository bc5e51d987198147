// SPDX-License-Identifier: GPL-2.0
/*
 * race_rcu_buggy - BUG: RCU callbacks in module text still pending at rmmod
 * (call_rcu() without rcu_barrier() in the exit path).
 *
 * The module keeps nr_entries entries on an RCU-protected list. At exit it
 * unlinks them with list_del_rcu() and frees them with call_rcu(), whose
 * callback, retire_entry(), lives in this module's text. Retiring is staged:
 * an entry goes through `stages` further grace periods before it is freed
 * (retire_entry() re-queues itself - think of an object whose sub-objects
 * must outlive it by a grace period each). The exit path returns without
 * waiting for any of that, so rmmod frees the module while the RCU core
 * still holds callbacks pointing to retire_entry().
 *
 * Stock kernel: when a pending callback is invoked, the CPU jumps to freed
 * text: "BUG: unable to handle page fault for address: ffffffffc0...",
 * "#PF: supervisor instruction fetch", with rcu_do_batch / rcu_core in the
 * trace, usually from the RCU softirq, so "Kernel panic - not syncing: Fatal
 * exception in interrupt"; "[last unloaded: race_rcu_buggy]".
 * With stages=0 (one plain call_rcu per entry) the bug is usually hidden on a
 * stock kernel: module unload itself waits for a grace period
 * (synchronize_rcu() in free_module()), which often flushes the callbacks
 * first - but not reliably (expedited grace periods, offloaded callbacks).
 *
 * The fix (race_rcu_fixed): rcu_barrier() before returning from exit, which
 * waits until every callback queued so far has run; because callbacks here
 * re-queue themselves, it is repeated until none is pending.
 */
#include <linux/atomic.h>
#include <linux/module.h>
#include <linux/rculist.h>
#include <linux/slab.h>

static unsigned int nr_entries = 64;
module_param(nr_entries, uint, 0444);
MODULE_PARM_DESC(nr_entries, "entries on the RCU list (default 64)");

static unsigned int stages = 3;
module_param(stages, uint, 0444);
MODULE_PARM_DESC(stages, "extra grace periods each entry waits before it is freed (default 3)");

struct entry {
	struct list_head node;
	struct rcu_head rcu;
	unsigned int stages_left;
};

static LIST_HEAD(entries);
static atomic_t retiring = ATOMIC_INIT(0);

static void retire_entry(struct rcu_head *head)
{
	struct entry *e = container_of(head, struct entry, rcu);

	if (e->stages_left) {
		e->stages_left--;
		call_rcu(&e->rcu, retire_entry);
		return;
	}
	kfree(e);
	atomic_dec(&retiring);
}

static int __init race_rcu_buggy_init(void)
{
	struct entry *e;
	unsigned int i;

	for (i = 0; i < nr_entries; i++) {
		e = kzalloc(sizeof(*e), GFP_KERNEL);
		if (!e)
			break;
		list_add_rcu(&e->node, &entries);
	}
	pr_info("race_rcu_buggy: %u entries, %u extra grace periods to retire each\n",
		i, stages);
	return 0;
}

static void __exit race_rcu_buggy_exit(void)
{
	struct entry *e, *tmp;

	list_for_each_entry_safe(e, tmp, &entries, node) {
		list_del_rcu(&e->node);
		e->stages_left = stages;
		atomic_inc(&retiring);
		call_rcu(&e->rcu, retire_entry);
	}
	/* BUG: no rcu_barrier(); retire_entry() callbacks are still queued. */
	pr_info("race_rcu_buggy: unloading with %d entries still retiring\n",
		atomic_read(&retiring));
}

module_init(race_rcu_buggy_init);
module_exit(race_rcu_buggy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - RCU callbacks pending at rmmod (buggy)");
