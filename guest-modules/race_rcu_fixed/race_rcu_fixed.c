// SPDX-License-Identifier: GPL-2.0
/*
 * race_rcu_fixed - the correct twin of race_rcu_buggy.
 *
 * Same RCU list retired through staged call_rcu() callbacks. Before exit
 * returns it calls rcu_barrier(), which waits until every RCU callback that
 * was queued before the call has been invoked. synchronize_rcu() would not
 * do: it waits for a grace period, not for callbacks. Because
 * retire_entry() re-queues itself, one barrier only guarantees progress by
 * one stage, so the exit path repeats it until no entry is retiring. (In
 * general: first stop whatever queues new callbacks, then rcu_barrier().)
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

static int __init race_rcu_fixed_init(void)
{
	struct entry *e;
	unsigned int i;

	for (i = 0; i < nr_entries; i++) {
		e = kzalloc(sizeof(*e), GFP_KERNEL);
		if (!e)
			break;
		list_add_rcu(&e->node, &entries);
	}
	pr_info("race_rcu_fixed: %u entries, %u extra grace periods to retire each\n",
		i, stages);
	return 0;
}

static void __exit race_rcu_fixed_exit(void)
{
	struct entry *e, *tmp;
	unsigned int barriers = 0;

	list_for_each_entry_safe(e, tmp, &entries, node) {
		list_del_rcu(&e->node);
		e->stages_left = stages;
		atomic_inc(&retiring);
		call_rcu(&e->rcu, retire_entry);
	}
	/* FIX: wait until every retire_entry() callback has run. */
	while (atomic_read(&retiring)) {
		rcu_barrier();
		barriers++;
	}
	pr_info("race_rcu_fixed: unloading, all entries retired after %u barriers\n",
		barriers);
}

module_init(race_rcu_fixed_init);
module_exit(race_rcu_fixed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - rcu_barrier() before rmmod (fixed)");
