"""Image quality: PSNR/SSIM on Y with MATLAB conventions, and model evaluation on image sets."""
