"""Integer inference (README "Integer inference", in progress): the float network a plan stands
for (`network`), and calibration of every node's output range on real inputs (`calibrate`).
The integer graph lowered from graph + plan + calibration is not built yet."""
