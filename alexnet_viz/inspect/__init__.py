"""Looking inside one unit or one channel of a network, on the user's own image.

walk.py        every layer's output by walking the Sequentials (no hooks), and private copies
receptive.py   a unit's receptive field on the input: the exact box and the effective (gradient) map
arithmetic.py  how a unit's value was computed, with the real numbers (patch × kernel + bias → …)
top.py         the test images that excite a channel most, cropped to the receptive field
featviz.py     an input optimized to excite a channel (gradient ascent with jitter and blur)
attribution.py captum's attribution methods (Grad-CAM, Guided Grad-CAM, IG, Occlusion, Saliency)
"""
