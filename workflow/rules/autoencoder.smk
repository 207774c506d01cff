stage = StageRule("train_autoencoder")


rule train_autoencoder:
    input:
        stage.input,
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
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=stage.gpus,
        runtime=2880,
    params:
        values=stage.params,
    shell:
        stage_shell("train_autoencoder")


stage = StageRule("encode")


rule encode:
    input:
        stage.input,
    output:
        train=paths.latents("{name}")["train"],
        val=paths.latents("{name}")["val"],
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=0,
        runtime=120,
    params:
        values=stage.params,
    shell:
        stage_shell("encode")


stage = StageRule("evaluate_reconstruction")


rule evaluate_reconstruction:
    input:
        stage.input,
    output:
        metrics=paths.reconstruction("{name}")["metrics"],
        usage=paths.reconstruction("{name}")["usage"],
        grid=paths.reconstruction("{name}")["grid"],
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=stage.params,
    shell:
        stage_shell("evaluate_reconstruction")
