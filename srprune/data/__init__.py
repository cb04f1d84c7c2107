"""Images in: folders and paired layouts, MATLAB-compatible bicubic, LR pyramids, patches."""
