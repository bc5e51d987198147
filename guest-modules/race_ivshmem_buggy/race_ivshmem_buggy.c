// SPDX-License-Identifier: GPL-2.0
/*
 * race_ivshmem_buggy - BUG: remove() leaves the interrupts requested and the
 * device enabled, as if the PCI core undid what probe() set up.
 *
 * A PCI driver for QEMU's ivshmem-doorbell device (1af4:1110), the same as
 * race_ivshmem_fixed: MSI-X, every vector requested as "mh_ivshmem",
 * interrupts counted in a kmalloc'd struct. modharness rings the doorbells from the
 * host, so the interrupts keep coming whatever the guest does.
 *
 * remove() only releases the regions and kfree()s its state: no free_irq(),
 * no pci_free_irq_vectors(), no pci_disable_device(). The handlers stay
 * registered with dev_id = the freed struct and the device keeps bus
 * mastering, so each doorbell still interrupts. Once rmmod has freed the
 * module, the next one jumps into freed module text in hard-interrupt context.
 *
 * Stock 6.12 under a host storm (20000 rings/s; measured once): at unbind
 * "WARNING ... kernel/irq/irqdomain.c ... irq_domain_remove" and
 * "WARNING ... kernel/irq/msi.c ... msi_device_data_release" (Comm: rmmod,
 * the device's MSI domain goes while its interrupts are still requested),
 * then within ~150 ms "BUG: unable to handle page fault" on an instruction
 * fetch at a bare freed address (ffffffffc0...), Comm: swapper, "?
 * __handle_irq_event_percpu" in <IRQ>, "Modules linked in: [last unloaded:
 * race_ivshmem_buggy(OE)]", "Kernel panic - not syncing: Fatal exception in
 * interrupt". Without doorbells only the WARNINGs should appear (not tried).
 *
 * The fix (race_ivshmem_fixed): free_irq() every vector, free the vectors,
 * then release and disable the device, then free the state.
 */
#include <linux/atomic.h>
#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>

#define IVSHMEM_VENDOR_ID	0x1af4
#define IVSHMEM_DEVICE_ID	0x1110
#define IVSHMEM_REG_BAR		0
#define IVSHMEM_REG_IVPOSITION	0x08	/* the ID the server gave this peer */

/* Driver-private state; every vector's dev_id. */
struct ivshmem {
	struct pci_dev *pdev;
	int nvec;
	atomic_long_t irqs;	/* interrupts handled, all vectors */
};

static irqreturn_t ivshmem_irq(int irq, void *dev_id)
{
	struct ivshmem *ivs = dev_id;

	/* MSI-X is edge-triggered and never shared: nothing to ack. */
	atomic_long_inc(&ivs->irqs);
	return IRQ_HANDLED;
}

static void ivshmem_free_irqs(struct ivshmem *ivs, int count)
{
	while (count--)
		free_irq(pci_irq_vector(ivs->pdev, count), ivs);
}

static int ivshmem_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct ivshmem *ivs;
	void __iomem *regs;
	int position;
	int nvec;
	int err;
	int i;

	ivs = kzalloc(sizeof(*ivs), GFP_KERNEL);
	if (!ivs)
		return -ENOMEM;
	ivs->pdev = pdev;
	atomic_long_set(&ivs->irqs, 0);

	err = pci_enable_device(pdev);
	if (err)
		goto err_free;
	err = pci_request_regions(pdev, "race_ivshmem_buggy");
	if (err)
		goto err_disable;

	/* Only to log which peer we are; the registers are not needed after. */
	regs = pci_iomap(pdev, IVSHMEM_REG_BAR, 0);
	if (!regs) {
		err = -ENOMEM;
		goto err_release;
	}
	position = ioread32(regs + IVSHMEM_REG_IVPOSITION);
	pci_iounmap(pdev, regs);

	/*
	 * One interrupt per doorbell vector: the host rings them one by one.
	 * ivshmem-plain has no MSI-X capability and nothing to count.
	 */
	nvec = pci_msix_vec_count(pdev);
	if (nvec <= 0) {
		err = -ENODEV;
		goto err_release;
	}
	/* An MSI-X interrupt is a memory write by the device: it needs bus mastering. */
	pci_set_master(pdev);
	ivs->nvec = pci_alloc_irq_vectors(pdev, nvec, nvec, PCI_IRQ_MSIX);
	if (ivs->nvec < 0) {
		err = ivs->nvec;
		goto err_release;
	}
	for (i = 0; i < ivs->nvec; i++) {
		err = request_irq(pci_irq_vector(pdev, i), ivshmem_irq, 0,
				  "mh_ivshmem", ivs);
		if (err) {
			ivshmem_free_irqs(ivs, i);
			goto err_vectors;
		}
	}
	pci_set_drvdata(pdev, ivs);
	dev_info(&pdev->dev, "race_ivshmem_buggy: peer %d, %d MSI-X vectors from irq %d\n",
		 position, ivs->nvec, pci_irq_vector(pdev, 0));
	return 0;

err_vectors:
	pci_free_irq_vectors(pdev);
	pci_clear_master(pdev);
err_release:
	pci_release_regions(pdev);
err_disable:
	pci_disable_device(pdev);
err_free:
	kfree(ivs);
	return err;
}

static void ivshmem_remove(struct pci_dev *pdev)
{
	struct ivshmem *ivs = pci_get_drvdata(pdev);

	dev_info(&pdev->dev, "race_ivshmem_buggy: removing after %ld interrupts\n",
		 atomic_long_read(&ivs->irqs));
	/*
	 * BUG: no free_irq(), no pci_free_irq_vectors(), no
	 * pci_disable_device(): the handlers stay registered on a device
	 * that still interrupts, with dev_id pointing at the struct freed
	 * here and the handler in text freed at unload.
	 */
	pci_release_regions(pdev);
	kfree(ivs);
}

static const struct pci_device_id ivshmem_ids[] = {
	{ PCI_DEVICE(IVSHMEM_VENDOR_ID, IVSHMEM_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, ivshmem_ids);

static struct pci_driver ivshmem_driver = {
	.name = "race_ivshmem_buggy",
	.id_table = ivshmem_ids,
	.probe = ivshmem_probe,
	.remove = ivshmem_remove,
};
module_pci_driver(ivshmem_driver);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - ivshmem interrupts left requested at remove (buggy)");
