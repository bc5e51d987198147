// SPDX-License-Identifier: GPL-2.0
/*
 * race_notifier_fixed - the correct twin of race_notifier_buggy.
 *
 * Same module-load watcher on the module notifier chain; the exit path calls
 * unregister_module_notifier(), which unlinks the notifier_block under the
 * chain's rwsem, so no caller can still be inside module_event() when the
 * module's memory is freed. Any register_*_notifier() in init needs its
 * unregister_*_notifier() in exit (and in init's error path).
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
		pr_info("race_notifier_fixed: module %s is coming\n", mod->name);
	return NOTIFY_DONE;
}

static struct notifier_block module_watcher = {
	.notifier_call = module_event,
};

static int __init race_notifier_fixed_init(void)
{
	int err = register_module_notifier(&module_watcher);

	if (err)
		return err;
	pr_info("race_notifier_fixed: watching module loads\n");
	return 0;
}

static void __exit race_notifier_fixed_exit(void)
{
	/* FIX: leave the chain before our memory goes away. */
	unregister_module_notifier(&module_watcher);
	pr_info("race_notifier_fixed: unloading after %lu events, notifier unregistered\n",
		seen_events);
}

module_init(race_notifier_fixed_init);
module_exit(race_notifier_fixed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - notifier unregistered at rmmod (fixed)");
