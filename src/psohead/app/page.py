"""The Gradio page: photo and options on the left, live status; on the right a live preview of
the head while it is fitted, then the 3D head, turntable, views, comparisons and downloads.
Everything it loads is served by this process."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InputError, PsoheadError
from .config import AppConfig
from .jobs import CANCELLED, DONE, WAITING, Busy, JobQueue, QueueLimits
from .pipeline import Progress
from .results import collect, zip_folder
from .uploads import accept_image

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25
STAGE_WORDS = {"first_look": "a first look (the encoder's guess)", "preprocess": "finding and cropping the face",
               "stage1": "stage 1: fitting the latent code",
               "pseudo_back": "rendering the pseudo back view", "stage2": "stage 2: tuning the generator",
               "views": "export: rendering the views", "video": "export: turntable video",
               "mesh": "export: extracting the mesh", "save": "export: saving the network",
               "report": "export: writing the report"}
BACK_CHOICES = ("auto", "prior", "none", "photo")
PRESET_CHOICES = ("fast", "quality", "official", "preview")
PREVIEW_SIDE = 320
FIRST_LOOK_NOTE = " — first look: the encoder's guess, while the full reconstruction runs"
# the live preview is as small as the network renders (128 px for the bundled model): shown at the box size
CSS = "#status{min-height:2.5em} footer{display:none} #live img{width:100%;height:100%;object-fit:contain}"


def status_line(job, ahead: int) -> str:
    """What the page says about a job that has not finished."""
    if job.state == WAITING:
        return f"Waiting for the device: {ahead} job{'s' if ahead != 1 else ''} ahead of yours."
    p = job.progress
    if p is None:
        return "Starting..."
    words = STAGE_WORDS.get(p.stage, p.stage)
    step = f" — step {p.step} of {p.total}" if p.total and p.total > 1 else ""
    return f"Working: **{words}**{step}."


def describe_error(err: BaseException) -> str:
    """One line for the page: our messages as they are, anything else without its traceback."""
    if isinstance(err, PsoheadError):
        return str(err)
    return f"the reconstruction failed ({type(err).__name__}); the server log has the details"


class JobRunner:
    """Everything a page event needs: the queue, the loaded pipeline and the limits."""

    def __init__(self, config: AppConfig, pipeline, jobs: JobQueue):
        self.config, self.pipeline, self.jobs = config, pipeline, jobs

    def preview(self, photo):
        """A small preview of an uploaded photo, or a message (never the file's own name)."""
        if not photo:
            return None, ""
        with tempfile.TemporaryDirectory(dir=self.jobs.work_dir) as tmp:
            try:
                path = accept_image(photo, Path(tmp) / "photo.png", self.config.max_upload_bytes,
                                    self.config.max_pixels)
            except InputError as err:
                return None, f"⚠ {err}"
            from PIL import Image

            with Image.open(path) as im:
                im.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
                return im.copy(), ""

    def prepare(self, job, photo, back_mode, back_photo, extra, extra_yaw) -> dict:
        """The pipeline's arguments for one job, every upload checked and copied under a fixed name."""
        if not photo:
            raise InputError("drop a photo of a face first (or pick an example)")
        limits = (self.config.max_upload_bytes, self.config.max_pixels)
        args = {"image": accept_image(photo, job.folder / "photo.png", *limits), "extra_views": ()}
        if back_mode == "photo":
            if not back_photo:
                raise InputError("'photo' as the back needs a photo of the back of the head")
            args["back"] = str(accept_image(back_photo, job.folder / "back-photo.png", *limits,
                                            what="back photo"))
        elif back_mode in BACK_CHOICES:
            args["back"] = back_mode
        else:
            raise InputError(f"unknown back strategy {back_mode!r}")
        if extra:
            path = accept_image(extra, job.folder / "extra-view.png", *limits, what="extra view")
            args["extra_views"] = (f"{path}:{float(extra_yaw):g}",)
        return args

    def first_look(self, job, args: dict, preset: str) -> None:
        """The encoder's preview of the photo into ``job.first_look``, before a longer preset runs
        (where the network has an encoder and the app shows first looks): its turntable and views
        within seconds on a CPU, while the full reconstruction takes minutes."""
        if not self.config.first_look or preset == "preview" or not self.pipeline.has_encoder:
            return
        out = job.folder / "first-look"

        def report(progress):  # its own stage on the page: the steps of the full run come after it
            job.report(replace(progress, stage="first_look"))

        self.pipeline(args["image"], out, preset="preview", back=args["back"], progress=report)
        job.first_look = replace(collect(out), glb=None, downloads=[], first_look=True)  # downloads: the full run's

    def work(self, job, args: dict, preset: str):
        self.first_look(job, args, preset)
        out = job.folder / "out"
        self.pipeline(args["image"], out, preset=preset, back=args["back"], extra_views=args["extra_views"],
                      progress=job.report)
        job.report(Progress("report", 1, 1, "packing the downloads"))
        return collect(out, zip_folder(out, job.folder / f"psohead-{job.id}.zip"))

    def run(self, photo, preset, back_mode, back_photo, extra, extra_yaw):
        """Generator behind the Reconstruct button: yields (status, job id, preview or None,
        results or None); a preview is the job's latest, given once, while the job runs; results
        while it runs are its first look (no mesh, no downloads), given once."""
        if preset not in PRESET_CHOICES:
            yield f"⚠ unknown preset {preset!r}", None, None, None
            return
        try:
            job = self.jobs.admit()
        except Busy as err:
            yield f"⚠ {err}", None, None, None
            return
        finished = False
        try:
            try:
                args = self.prepare(job, photo, back_mode, back_photo, extra, extra_yaw)
            except InputError as err:
                self.jobs.discard(job)
                yield f"⚠ {err}", None, None, None
                finished = True
                return
            self.jobs.start(job, lambda j: self.work(j, args, preset))
            last_line, last_preview, first_look = None, None, None
            while not job.wait(POLL_SECONDS):
                line, preview = status_line(job, self.jobs.ahead_of(job)), job.preview
                new = preview if preview is not last_preview else None
                look = job.first_look if job.first_look is not first_look else None
                if line != last_line or new is not None or look is not None:
                    last_line, last_preview, first_look = line, preview, job.first_look
                    yield line, job.id, new, look
            finished = True
            if job.state == DONE:
                yield (f"Done in {time.time() - job.created:.0f} s. Drag the head to turn it.", job.id, None,
                       job.result)
            elif job.state == CANCELLED:
                yield "Cancelled.", None, None, None
            else:
                yield f"⚠ {describe_error(job.error)}", None, None, None
        finally:
            if not finished:  # the page went away mid-run: stop the work
                job.cancel()

    def cancel(self, job_id):
        if self.jobs.cancel(job_id):
            return "Cancelling at the next step..."
        return "Nothing to cancel."


def theme():
    """Gradio's default look with fonts this process serves itself or the system has: no web fonts."""
    import gradio as gr

    return gr.themes.Default(font=[gr.themes.LocalFont("Source Sans Pro"), "ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"])


def build_page(runner: JobRunner):
    """The gr.Blocks of the app (not launched)."""
    import gradio as gr

    cfg = runner.config
    with gr.Blocks(title="psohead", analytics_enabled=False,
                   delete_cache=(int(min(60, max(1, cfg.ttl / 4))), int(cfg.ttl))) as page:
        gr.Markdown("## psohead — one photo to a 360° 3D head\nDrop a photo of a face, press *Reconstruct*, "
                    "then turn the head and download it. Everything runs on this machine.")
        job_id = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                photo = gr.File(label="Photo of a face (drop it here)", type="filepath", elem_id="photo")
                preview = gr.Image(label="Your photo", interactive=False, height=PREVIEW_SIDE, elem_id="preview")
                examples = sorted(cfg.examples_dir.glob("*.jpg")) if cfg.examples_dir and cfg.examples_dir.is_dir() else []
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[photo], label="Examples")
                preset = gr.Radio(list(PRESET_CHOICES), value=cfg.preset if cfg.preset in PRESET_CHOICES else "fast",
                                  label="Preset",
                                  info="fast: quick; quality: better back, slower; official: the paper's 500 + 500 "
                                       "steps; preview: the encoder's guess only, seconds, no mesh")
                back = gr.Radio(list(BACK_CHOICES), value="auto", label="Back of the head",
                                info="auto/prior: imagined by the model; none: front only; photo: upload one")
                back_photo = gr.File(label="Photo of the back of the head", type="filepath", visible=False)
                with gr.Accordion("Extra view (optional)", open=False):
                    extra = gr.File(label="Another photo of the same head", type="filepath")
                    extra_yaw = gr.Slider(-180, 180, value=90, step=5, label="Its yaw in degrees (0 = front, 90 = side)")
                with gr.Row():
                    run = gr.Button("Reconstruct", variant="primary", elem_id="run")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=2):
                live = gr.Image(label="Live preview: the head as it is being fitted (front view)", interactive=False,
                                height=PREVIEW_SIDE, visible=False, elem_id="live")
                viewer = gr.Model3D(label="3D head — drag to turn, scroll to zoom", height=440,
                                    clear_color=(0.96, 0.96, 0.96, 1.0), elem_id="viewer")
                with gr.Row():
                    video = gr.Video(label="Turntable", autoplay=True, loop=True, height=320, elem_id="video")
                    views = gr.Image(label="Views", interactive=False, height=320, elem_id="views")
                with gr.Row():
                    front = gr.Image(label="Front: your photo | render", interactive=False, height=200)
                    back_cmp = gr.Image(label="Back: before tuning | target | final", interactive=False, height=200)
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        LABELS = {video: video.label, views: views.label, front: front.label, back_cmp: back_cmp.label}

        # Gradio 6's Model3D does not draw a value streamed by a generator: the generator hands the
        # GLB over in a State and a plain step after it shows it.
        glb = gr.State(None)
        outputs = [status, job_id, live, glb, video, views, front, back_cmp, downloads]

        def run_job(photo_v, preset_v, back_v, back_photo_v, extra_v, yaw_v):
            yield {live: gr.update(value=None, visible=False), glb: None, video: None, views: None, front: None,
                   back_cmp: None, downloads: None}
            previewed = False
            for line, jid, picture, res in runner.run(photo_v, preset_v, back_v, back_photo_v, extra_v, yaw_v):
                update = {status: line, job_id: jid}
                if picture is not None:
                    update[live], previewed = gr.update(value=picture, visible=True), True
                if res is not None:
                    shown = {glb: res.glb, video: res.video, views: res.views, front: res.front, back_cmp: res.back}
                    update.update({downloads: [str(p) for p in res.downloads],
                                   **{c: None if p is None else str(p) for c, p in shown.items()}})
                    note = FIRST_LOOK_NOTE if res.first_look else ""  # a first look says so on each picture
                    for c, label in LABELS.items():
                        update[c] = gr.update(value=update[c], label=label + note)
                yield update
            if previewed:  # the job ended: its results (or a message) take the preview's place
                yield {live: gr.update(value=None, visible=False)}

        photo.change(runner.preview, [photo], [preview, status], queue=False)
        back.change(lambda b: gr.update(visible=b == "photo"), [back], [back_photo], queue=False)
        run.click(lambda: None, None, viewer, queue=False).then(
            run_job, [photo, preset, back, back_photo, extra, extra_yaw], outputs, concurrency_limit=None,
            api_name="reconstruct").then(lambda path: path, glb, viewer, queue=False)
        cancel.click(runner.cancel, [job_id], [status], queue=False)
    return page


@dataclass
class Server:
    """A running app: ``url``, and ``close()`` which stops it and deletes its work folder if it made it."""

    page: object
    url: str
    jobs: JobQueue
    work_dir: Path
    owns_work_dir: bool

    def close(self) -> None:
        self.page.close()
        self.jobs.stop()
        if self.owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def start(config: AppConfig, block: bool = True, pipeline=None) -> Server | None:
    """Launch the page. ``pipeline``: what a job calls, with a ``has_encoder`` attribute (default:
    :class:`Pipeline` on ``config.network``, loaded here once)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read by gradio at import and at launch
    owns = config.work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="psohead-app-")) if owns else Path(config.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    cache = work_dir / "gradio"
    os.environ["GRADIO_TEMP_DIR"] = str(cache)  # uploads and served copies stay inside the budget
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise InputError("psohead app needs the web extra: pip install -e '.[app]'") from None
    if pipeline is None:
        from .pipeline import Pipeline

        pipeline = Pipeline(config.network, config.device, config.preset, encoder=config.encoder, **config.overrides)
    jobs = JobQueue(work_dir, QueueLimits(config.queue, config.concurrency, config.ttl,
                                          int(config.max_disk_mb * 1e6)), cache_dirs=(cache,))
    jobs.sweep()  # job folders an earlier server left behind
    jobs.start_sweeper()
    page = build_page(JobRunner(config, pipeline, jobs))
    page.queue(max_size=4 * config.queue + 16, default_concurrency_limit=None)
    allowed = [str(work_dir)] + ([str(config.examples_dir)] if config.examples_dir else [])
    page.launch(server_name=config.host, server_port=config.port, share=False, allowed_paths=allowed,
                max_file_size=config.max_upload_bytes, show_error=False, theme=theme(), css=CSS,
                footer_links=[], run_history=False, ssr_mode=False, mcp_server=False, enable_monitoring=False,
                pwa=False, inbrowser=False, quiet=not block, prevent_thread_lock=True)
    server = Server(page, page.local_url, jobs, work_dir, owns)
    if not block:
        return server
    print(f"psohead app: open {server.url} (Ctrl+C stops it)", flush=True)
    try:
        page.block_thread()
    finally:
        server.close()
    return None
