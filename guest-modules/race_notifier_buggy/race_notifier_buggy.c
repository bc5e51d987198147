// SPDX-License-Identifier: GPL-2.0
/*
 * race_notifier_buggy - BUG: a notifier_block left registered after rmmod.
 *
 * The module watches other modules come and go with register_module_notifier()
 * and never calls unregister_module_notifier(). The notifier_block (in this
 * module's data) stays linked into the kernel's module notifier chain, and its
 * ->notifier_call points into this module's text. Nothing happens at rmmod
 * itself; the bomb goes off at the NEXT module load (or unload), when
 * load_module() runs the chain and dereferences the freed notifier_block.
 *
 * Stock kernel: "BUG: unable to handle page fault for address: ffffffffc0..."
 * in notifier_call_chain (called from blocking_notifier_call_chain /
 * prepare_coming_module), in the context of the insmod that loads some OTHER
 * module. The oops kills that insmod while it holds the chain's rwsem, so
 * later module loads and unloads may hang too. The culprit is named only by
 * "[last unloaded: race_notifier_buggy]"; the module being loaded appears in
 * "Modules linked in" (or as the insmod's argument) but is innocent.
 *
 * The fix (race_notifier_fixed): unregister_module_notifier() in the exit
 * path. Unregistering also waits (synchronize_rcu / the chain's rwsem) for
 * callers that are still running the callback.
 */
#include <linux/module.h>
#include <linux/notifier.h>

static unsigned long seen_events;

static int module_event(struct notifier_block *nb, unsigned long state,
			void *data)
{
	struct module *mod = data;

	seen_events++;
	if (state == MODULE_STATE_COMING)
		pr_info("race_notifier_buggy: module %s is coming\n", mod->name);
	return NOTIFY_DONE;
}

static struct notifier_block module_watcher = {
	.notifier_call = module_event,
};

static int __init race_notifier_buggy_init(void)
{
	int err = register_module_notifier(&module_watcher);

	if (err)
		return err;
	pr_info("race_notifier_buggy: watching module loads\n");
	return 0;
}

static void __exit race_notifier_buggy_exit(void)
{
	/* BUG: no unregister_module_notifier(&module_watcher). */
	pr_info("race_notifier_buggy: unloading after %lu events, notifier still registered\n",
		seen_events);
}

module_init(race_notifier_buggy_init);
module_exit(race_notifier_buggy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - notifier left registered at rmmod (buggy)");
