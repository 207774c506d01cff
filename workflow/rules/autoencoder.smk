rule train_autoencoder:
    input:
        job_inputs("train_autoencoder"),
    output:
        model="results/autoencoders/{name}/model.pt",
        recon=report(
            "results/autoencoders/{name}/recon.png",
            caption="../report/recon.rst",
            category="Autoencoders",
            subcategory="{name}",
        ),
        metrics="results/autoencoders/{name}/metrics.json",
        curve="results/autoencoders/{name}/train_log.csv",
    log:
        "results/logs/train_autoencoder/{name}.log",
    benchmark:
        "results/benchmarks/train_autoencoder/{name}.tsv"
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        values=job_params("train_autoencoder"),
    shell:
        stage_cmd("train-autoencoder")


rule encode:
    input:
        job_inputs("encode"),
    output:
        train="results/latents/{name}/train.npy",
        val="results/latents/{name}/val.npy",
    log:
        "results/logs/encode/{name}.log",
    benchmark:
        "results/benchmarks/encode/{name}.tsv"
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
    params:
        values=job_params("encode"),
    shell:
        stage_cmd("encode")
