// SPDX-License-Identifier: GPL-2.0
/*
 * race_irq_fixed - the correct twin of race_irq_buggy.
 *
 * Same driver for QEMU's "edu" device: interrupt "mh_edu" (see
 * /proc/interrupts), a DMA transfer always in flight, an optional interrupt
 * storm raised from an hrtimer (storm_hz). remove() tears down in the only
 * safe order:
 *  1. stop every source of new interrupts: cancel the storm timer, tell the
 *     handler not to start another DMA, and wait for the one in flight;
 *  2. acknowledge anything still pending, so the shared INTx line is quiet;
 *  3. free_irq(), which unregisters the handler and waits for an instance
 *     running on another CPU (synchronize_irq) - after this no code of ours
 *     runs in interrupt context and dev_id is no longer referenced;
 *  4. free the buffers, unmap BAR0, release and disable the device.
 * Loading and unloading it under an external storm (user space writing to
 * BAR0 offset 0x60 through /sys/bus/pci/devices/.../resource0) must stay
 * silent. Debian kernels have CONFIG_IO_STRICT_DEVMEM=y: that mmap fails
 * with EINVAL while a driver holds the BAR, unless the guest boots with
 * iomem=relaxed.
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/hrtimer.h>
#include <linux/interrupt.h>
#include <linux/iopoll.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/version.h>

/* QEMU "edu" device, docs/specs/edu.rst in the QEMU tree. */
#define EDU_VENDOR_ID		0x1234
#define EDU_DEVICE_ID		0x11e8
#define EDU_REG_ID		0x00	/* reads 0xRRrr00ed */
#define EDU_REG_IRQ_STATUS	0x24	/* bits that raised the interrupt */
#define EDU_REG_IRQ_RAISE	0x60	/* write: OR into status, raise the IRQ */
#define EDU_REG_IRQ_ACK		0x64	/* write: clear bits, lower INTx when 0 */
#define EDU_REG_DMA_SRC		0x80
#define EDU_REG_DMA_DST		0x88
#define EDU_REG_DMA_COUNT	0x90
#define EDU_REG_DMA_CMD		0x98
#define EDU_DMA_RUN		0x1	/* cleared by the device when done */
#define EDU_DMA_IRQ		0x4	/* raise EDU_IRQ_DMA when done */
#define EDU_IRQ_DMA		0x100	/* status bit of a finished DMA */
#define EDU_IRQ_STORM		0x10000	/* status bit we raise ourselves */
#define EDU_DMA_WINDOW		0x40000	/* device-side DMA buffer address */
#define EDU_DMA_BYTES		256
/* The device completes a DMA 100 ms (virtual clock) after it was started. */
#define EDU_DMA_TIMEOUT_US	500000

#ifndef PCI_IRQ_INTX
#define PCI_IRQ_INTX PCI_IRQ_LEGACY
#endif

static unsigned int storm_hz = 2000;
module_param(storm_hz, uint, 0444);
MODULE_PARM_DESC(storm_hz, "interrupts per second the driver raises on the device, 0 = none (default 2000)");

static bool use_msi;
module_param(use_msi, bool, 0444);
MODULE_PARM_DESC(use_msi, "use MSI instead of the shared legacy INTx line (default false)");

/* Driver-private state; the interrupt handler's dev_id. */
struct edu {
	struct pci_dev *pdev;
	void __iomem *regs;
	int irq;
	void *dma_buf;
	dma_addr_t dma_handle;
	bool stopping;			/* no new DMA once set */
	unsigned long irqs;		/* interrupts handled */
	unsigned long dmas;		/* DMA transfers completed */
	struct hrtimer storm;		/* raises EDU_IRQ_STORM at storm_hz */
	ktime_t storm_period;
};

/*
 * The device "streams": every DMA completion interrupt starts the next
 * transfer, so a transfer is always in flight and its completion interrupt
 * is always less than 100 ms away - like a real NIC or capture card.
 */
static void edu_start_dma(struct edu *edu)
{
	iowrite32(lower_32_bits(edu->dma_handle), edu->regs + EDU_REG_DMA_SRC);
	iowrite32(EDU_DMA_WINDOW, edu->regs + EDU_REG_DMA_DST);
	iowrite32(EDU_DMA_BYTES, edu->regs + EDU_REG_DMA_COUNT);
	iowrite32(EDU_DMA_RUN | EDU_DMA_IRQ, edu->regs + EDU_REG_DMA_CMD);
}

static irqreturn_t edu_irq(int irq, void *dev_id)
{
	struct edu *edu = dev_id;
	u32 status = ioread32(edu->regs + EDU_REG_IRQ_STATUS);

	/* The INTx line may be shared: not ours if nothing is pending. */
	if (!status)
		return IRQ_NONE;
	iowrite32(status, edu->regs + EDU_REG_IRQ_ACK);
	edu->irqs++;
	if (status & EDU_IRQ_DMA) {
		edu->dmas++;
		if (!READ_ONCE(edu->stopping))
			edu_start_dma(edu);
	}
	return IRQ_HANDLED;
}

static enum hrtimer_restart edu_storm_fn(struct hrtimer *t)
{
	struct edu *edu = container_of(t, struct edu, storm);

	iowrite32(EDU_IRQ_STORM, edu->regs + EDU_REG_IRQ_RAISE);
	hrtimer_forward_now(t, edu->storm_period);
	return HRTIMER_RESTART;
}

static void edu_storm_init(struct edu *edu)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
	hrtimer_setup(&edu->storm, edu_storm_fn, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
#else
	hrtimer_init(&edu->storm, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	edu->storm.function = edu_storm_fn;
#endif
}

static int edu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct edu *edu;
	int err;

	edu = kzalloc(sizeof(*edu), GFP_KERNEL);
	if (!edu)
		return -ENOMEM;
	edu->pdev = pdev;
	edu_storm_init(edu);

	err = pci_enable_device(pdev);
	if (err)
		goto err_free;
	err = pci_request_regions(pdev, "race_irq_fixed");
	if (err)
		goto err_disable;
	edu->regs = pci_iomap(pdev, 0, 0);
	if (!edu->regs) {
		err = -ENOMEM;
		goto err_release;
	}
	if ((ioread32(edu->regs + EDU_REG_ID) & 0xff) != 0xed) {
		err = -ENODEV;
		goto err_unmap;
	}

	/* The device can only address 28 bits. */
	pci_set_master(pdev);
	err = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(28));
	if (err)
		goto err_unmap;
	edu->dma_buf = dma_alloc_coherent(&pdev->dev, EDU_DMA_BYTES,
					  &edu->dma_handle, GFP_KERNEL);
	if (!edu->dma_buf) {
		err = -ENOMEM;
		goto err_unmap;
	}

	err = pci_alloc_irq_vectors(pdev, 1, 1,
				    use_msi ? PCI_IRQ_MSI : PCI_IRQ_INTX);
	if (err < 0)
		goto err_dma;
	edu->irq = pci_irq_vector(pdev, 0);
	err = request_irq(edu->irq, edu_irq, IRQF_SHARED, "mh_edu", edu);
	if (err)
		goto err_vectors;
	pci_set_drvdata(pdev, edu);

	edu_start_dma(edu);
	if (storm_hz) {
		edu->storm_period = ns_to_ktime(NSEC_PER_SEC / storm_hz);
		hrtimer_start(&edu->storm, edu->storm_period, HRTIMER_MODE_REL);
	}
	dev_info(&pdev->dev, "race_irq_fixed: irq %d (%s), storm %u Hz, DMA streaming\n",
		 edu->irq, use_msi ? "MSI" : "INTx", storm_hz);
	return 0;

err_vectors:
	pci_free_irq_vectors(pdev);
err_dma:
	dma_free_coherent(&pdev->dev, EDU_DMA_BYTES, edu->dma_buf, edu->dma_handle);
err_unmap:
	pci_iounmap(pdev, edu->regs);
err_release:
	pci_release_regions(pdev);
err_disable:
	pci_disable_device(pdev);
err_free:
	kfree(edu);
	return err;
}

static void edu_remove(struct pci_dev *pdev)
{
	struct edu *edu = pci_get_drvdata(pdev);
	u32 cmd;

	/* 1. Stop every source of new interrupts: our storm, then the DMA. */
	hrtimer_cancel(&edu->storm);
	WRITE_ONCE(edu->stopping, true);
	/* A handler running right now may still have started one more DMA. */
	synchronize_irq(edu->irq);
	if (readx_poll_timeout(ioread32, edu->regs + EDU_REG_DMA_CMD, cmd,
			       !(cmd & EDU_DMA_RUN), 1000, EDU_DMA_TIMEOUT_US))
		dev_warn(&pdev->dev, "race_irq_fixed: DMA did not finish\n");
	/* 2. Clear whatever is still pending so INTx is not left asserted. */
	iowrite32(~0U, edu->regs + EDU_REG_IRQ_ACK);
	/*
	 * 3. free_irq() unregisters the handler and waits for one still
	 * running on another CPU; only after it may dev_id and the mapping
	 * the handler uses go away.
	 */
	free_irq(edu->irq, edu);
	pci_free_irq_vectors(pdev);
	dev_info(&pdev->dev, "race_irq_fixed: removing after %lu interrupts, %lu DMAs\n",
		 edu->irqs, edu->dmas);
	/* 4. Now free, in the reverse order of probe. */
	dma_free_coherent(&pdev->dev, EDU_DMA_BYTES, edu->dma_buf, edu->dma_handle);
	pci_iounmap(pdev, edu->regs);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	kfree(edu);
}

static const struct pci_device_id edu_ids[] = {
	{ PCI_DEVICE(EDU_VENDOR_ID, EDU_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, edu_ids);

static struct pci_driver edu_driver = {
	.name = "race_irq_fixed",
	.id_table = edu_ids,
	.probe = edu_probe,
	.remove = edu_remove,
};
module_pci_driver(edu_driver);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modharness: unload race - IRQ freed after quiescing the device (fixed)");
