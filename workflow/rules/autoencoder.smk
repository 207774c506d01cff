rule train_autoencoder:
    input:
        job_inputs("train_autoencoder"),
    output:
        model=paths.autoencoder("{name}")["model"],
        recon=report(
            paths.autoencoder("{name}")["recon"],
            caption="../report/recon.rst",
            category="Autoencoders",
            subcategory="{name}",
        ),
        metrics=paths.autoencoder("{name}")["metrics"],
        curve=paths.autoencoder("{name}")["curve"],
    log:
        paths.log("train_autoencoder", "{name}"),
    benchmark:
        paths.benchmark("train_autoencoder", "{name}")
    priority: job_priority("train_autoencoder")
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=training_gpus("autoencoders"),
        runtime=2880,
    params:
        values=job_params("train_autoencoder"),
    shell:
        stage_cmd("train-autoencoder")


rule encode:
    input:
        job_inputs("encode"),
    output:
        train=paths.latents("{name}")["train"],
        val=paths.latents("{name}")["val"],
    log:
        paths.log("encode", "{name}"),
    benchmark:
        paths.benchmark("encode", "{name}")
    priority: job_priority("encode")
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=0,
        runtime=120,
    params:
        values=job_params("encode"),
    shell:
        stage_cmd("encode")


rule evaluate_reconstruction:
    input:
        job_inputs("evaluate_reconstruction"),
    output:
        metrics=paths.reconstruction("{name}")["metrics"],
        usage=paths.reconstruction("{name}")["usage"],
        grid=paths.reconstruction("{name}")["grid"],
    log:
        paths.log("evaluate_reconstruction", "{name}"),
    benchmark:
        paths.benchmark("evaluate_reconstruction", "{name}")
    priority: job_priority("evaluate_reconstruction")
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=job_params("evaluate_reconstruction"),
    shell:
        stage_cmd("evaluate-reconstruction")
