// SPDX-License-Identifier: GPL-2.0
/*
 * race_ivshmem_fixed - the correct twin of race_ivshmem_buggy.
 *
 * Same driver for QEMU's ivshmem-doorbell device (1af4:1110): MSI-X, every
 * vector requested as "mh_ivshmem", interrupts counted. remove() undoes
 * probe() in reverse: free_irq() on every vector (it waits for a handler
 * running on another CPU, so nothing of ours runs in interrupt context after
 * it), pci_free_irq_vectors(), clear bus mastering (no more MSI-X writes),
 * release and disable the device, and only then kfree() the state.
 * Loading and unloading it under a host-driven storm must stay silent.
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
	err = pci_request_regions(pdev, "race_ivshmem_fixed");
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
	dev_info(&pdev->dev, "race_ivshmem_fixed: peer %d, %d MSI-X vectors from irq %d\n",
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

	/* free_irq() waits for a running handler, so the count is final after it. */
	ivshmem_free_irqs(ivs, ivs->nvec);
	pci_free_irq_vectors(pdev);
	pci_clear_master(pdev);
	dev_info(&pdev->dev, "race_ivshmem_fixed: removing after %ld interrupts\n",
		 atomic_long_read(&ivs->irqs));
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	kfree(ivs);
}

static const struct pci_device_id ivshmem_ids[] = {
	{ PCI_DEVICE(IVSHMEM_VENDOR_ID, IVSHMEM_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, ivshmem_ids);

static struct pci_driver ivshmem_driver = {
	.name = "race_ivshmem_fixed",
	.id_table = ivshmem_ids,
	.probe = ivshmem_probe,
	.remove = ivshmem_remove,
};
module_pci_driver(ivshmem_driver);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - ivshmem interrupts left requested at remove (fixed)");
