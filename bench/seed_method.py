"""The seed's method: `genImages` from the blog post "[SD] Using SD A111 api with baisc api calls"
(2023-12-30), copied as it is — options POST, txt2img, a png-info POST per image, PIL decode and
re-save with PngInfo, `requests.post` without a session.

Only what points it somewhere differs, set by the benchmark through the environment: the server
URL, the checkpoint title (the fake's current one, so the switch is a no-op as on a server that
already has it loaded) and the image size (1024x1024 in the benchmark; 512 in the post). Imports are
sorted, and the function raises if no image came back instead of falling off its end (for mypy).
It writes into `./result/` like the post, so the benchmark runs it in a temporary directory.
"""

import base64
import io
import os
import uuid

import requests
from PIL import Image, PngImagePlugin

URL = os.environ.get("SEED_URL", "http://127.0.0.1:7860")
MODEL = os.environ.get("SEED_MODEL", "qteamixQ_gamma.safetensors [58174ec2a4]")
SIZE = int(os.environ.get("SEED_SIZE", "512"))


def genImages(prompt: str, output_file_path: str = "result") -> str:
    url = URL

    option_payload = {
        "sd_model_checkpoint": MODEL,
    }

    requests.post(url=f"{url}/sdapi/v1/options", json=option_payload)

    payload = {
        "prompt": prompt,
        "negative_prompt": "EasyNegative, (worst quality:1.4), (low quality:1.4),  extra fingers, fewer fingers, blurry, watermark, logo, text, error, blurry, inaccurate eyes, extra digit,fewer digits, bad anatomy, bad hands, username, words",  # noqa: E501
        "steps": 27,
        "batch_size": 1,
        "cfg_scale": 7,
        "width": SIZE,
        "height": SIZE,
        "sampler_name": "UniPC",
        "save_images": False,
    }

    response = requests.post(url=f"{url}/sdapi/v1/txt2img", json=payload)

    r = response.json()

    for index, imagesData in enumerate(r["images"]):  # noqa: B007 - unused, as in the post
        image = Image.open(io.BytesIO(base64.b64decode(imagesData.split(",", 1)[0])))

        png_payload = {"image": "data:image/png;base64," + imagesData}
        response2 = requests.post(url=f"{url}/sdapi/v1/png-info", json=png_payload)

        pnginfo = PngImagePlugin.PngInfo()
        pnginfo.add_text("parameters", response2.json().get("info"))

        pngName = f"{uuid.uuid4()}.png"
        pngPathName = os.path.join(os.getcwd(), output_file_path, pngName)
        print(pngPathName)

        image.save(pngPathName, pnginfo=pnginfo)
        return pngPathName
    raise RuntimeError("the server returned no image")


if __name__ == "__main__":
    genImages(
        "1boy, solo, chibi, black hair, solo, holding iPad, purple shirt, ((round black glasses)), cool, broad face, tall,  slim, white skin, (green background), with legs and shoes, standing, full body, (burr cut: 1.3), short hair, (big forehead: 1.3), black eyes"  # noqa: E501
    )
